"""Reading a weave-minimal (1.x) data directory.

weave-minimal keeps one SQLite file per account, named
``<username>.<16 hex digits>`` where the digits are the start of
SHA1(its fixed salt + password): that becomes the account's password hash
(``{WEAVE-MINIMAL}...``, see :mod:`syncserver.auth.passwords`). Each table of
the file is a collection; ``modified`` is float seconds with two decimals and
``ttl`` is relative to ``modified``. weave-minimal has no numeric user ids and
no e-mail addresses, and its collection timestamp is the newest
``modified`` of the table.
"""

import os
import re
import sqlite3
import time

from syncserver.auth.passwords import WEAVE_MINIMAL_PREFIX
from syncserver.importers import MigrationError, SourceAccount, SourceCollection
from syncserver.protocol.wbo import is_valid_collection
from syncserver.storage import NEVER_EXPIRES, StoredRecord

_ACCOUNT_FILE = re.compile(r"^(?P<username>[^.]+)\.(?P<digest>[0-9a-f]{16})$")


def _centiseconds(seconds):
    return round(float(seconds) * 100)


class WeaveMinimalSource:
    """The accounts of one weave-minimal data directory."""

    def __init__(self, data_dir):
        if not os.path.isdir(data_dir):
            raise MigrationError(f"{data_dir} is not a directory")
        self.data_dir = data_dir
        self.files = sorted(name for name in os.listdir(data_dir) if _ACCOUNT_FILE.match(name))

    def close(self):
        pass

    def count(self):
        return len(self.files)

    def accounts(self):
        for name in self.files:
            match = _ACCOUNT_FILE.match(name)
            path = os.path.join(self.data_dir, name)
            yield SourceAccount(
                username=match["username"],
                password_hash=WEAVE_MINIMAL_PREFIX + match["digest"],
                collections=lambda path=path: self.collections(path))

    def collections(self, path):
        now_seconds = time.time()
        try:
            database = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        except sqlite3.Error as error:
            raise MigrationError(f"cannot open {path}: {error}") from None
        try:
            tables = [row[0] for row in database.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
            for table in tables:
                if not is_valid_collection(table):
                    continue
                quoted = '"' + table.replace('"', '""') + '"'
                newest = database.execute(f"SELECT MAX(modified) FROM {quoted}").fetchone()[0]
                if newest is None:
                    continue  # weave-minimal does not list an empty table either
                rows = database.execute(
                    "SELECT id, modified, payload, sortindex, parentid, predecessorid, ttl "
                    f"FROM {quoted} ORDER BY id").fetchall()
                yield SourceCollection(table, _centiseconds(newest),
                                       list(_live_records(rows, now_seconds)))
        except sqlite3.Error as error:
            raise MigrationError(f"cannot read {path}: {error}") from None
        finally:
            database.close()


def _live_records(rows, now_seconds):
    for item_id, modified, payload, sortindex, parentid, predecessorid, ttl in rows:
        if ttl is not None and modified is not None:
            expires = int(float(modified) + int(ttl))
            if now_seconds - float(modified) > int(ttl):
                continue  # weave-minimal would have expired it on the next read
        else:
            expires = NEVER_EXPIRES
        yield StoredRecord(
            id=str(item_id), modified=None if modified is None else _centiseconds(modified),
            payload=payload, sortindex=None if sortindex is None else int(sortindex),
            parentid=parentid, predecessorid=predecessorid, expires=expires)
