"""The databases of one process, one per SQL URL, shared by every backend that names it.

The composition root declares the pool options of each URL up front (from
every section that names it), then backends ask for their database by URL.
The registry remembers who asked and whether they want tables created, so
that the composition root can bring each database's schema up to date (or
check it) once, after every backend has been built.
"""

import dataclasses
import threading

from syncserver.db.database import Database


@dataclasses.dataclass
class DatabaseUse:
    """One database and what the backends using it asked for."""

    database: Database
    #: The settings keys that named it, in the order they asked (``storage.sqluri``...).
    keys: list = dataclasses.field(default_factory=list)
    #: The ``create_tables`` keys that were true for it.
    create_keys: list = dataclasses.field(default_factory=list)
    #: Set once its schema was created or checked for every key that asked.
    prepared_keys: list = dataclasses.field(default_factory=list)

    @property
    def create_tables(self):
        return bool(self.create_keys)


class DatabaseRegistry:
    """Builds each :class:`Database` on first use, with the options declared for its URL."""

    def __init__(self, options_by_url=None):
        self._options = dict(options_by_url or {})
        self._uses = {}
        self._lock = threading.Lock()

    def declare(self, url, **options):
        """Set the pool options of ``url`` (the largest pool asked for wins)."""
        current = self._options.get(url)
        if current is None:
            self._options[url] = dict(options)
        elif options.get("pool_size", 0) > current.get("pool_size", 0):
            current["pool_size"] = options["pool_size"]

    def database(self, url, key, create_tables=False):
        """The shared :class:`Database` of ``url``; ``key`` names the setting that gave it."""
        with self._lock:
            use = self._uses.get(url)
            if use is None:
                database = Database(url, key=key, **self._options.get(url, {}))
                use = self._uses[url] = DatabaseUse(database)
            if key not in use.keys:
                use.keys.append(key)
            create_key = key.rsplit(".", 1)[0] + ".create_tables"
            if create_tables and create_key not in use.create_keys:
                use.create_keys.append(create_key)
            return use.database

    def uses(self):
        """Every database asked for so far, with who asked (in the order they were built)."""
        return list(self._uses.values())

    def close(self):
        for use in self._uses.values():
            use.database.close()
