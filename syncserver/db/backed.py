"""What every backend kept in a :class:`~syncserver.db.Database` has in common.

Why a mixin: the SQL backends (records, accounts, nodes, reset codes, login
counters) all hold a database that is either shared (the server's, closed by
the composition root) or their own (built by ``from_settings``, closed with
them), expose its engine to tests and tools, and answer the heartbeat with
one cheap read of their own table (:meth:`~syncserver.db.Database.table_answers`).
Written once here.
"""


class DatabaseBacked:
    """A backend on ``self.database``; call :meth:`_use_database` from ``__init__``."""

    def _use_database(self, database, owns_database=False):
        self.database = database
        self._owns_database = owns_database

    @property
    def engine(self):
        """The SQLAlchemy engine (for tests and admin tools)."""
        return self.database.engine

    def close(self):
        """Close the database if it is this backend's own; a shared one is the server's."""
        if self._owns_database:
            self.database.close()
