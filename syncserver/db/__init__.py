"""The shared database layer: one :class:`Database` per SQL URL, whatever backends use it.

- :mod:`syncserver.db.database`: :class:`Database` (engine, pool, read and
  write transactions, outages as 503 errors, health).
- :mod:`syncserver.db.registry`: the process's databases, one per URL.
- :mod:`syncserver.db.engines`: how each database is driven (SQLite WAL and
  its writer queue, MySQL and PostgreSQL timeouts).
- :mod:`syncserver.db.errors`: which failures mean "the database is not there".

Nothing here knows a table: backends define theirs, and
:mod:`syncserver.migrations` creates them.
"""

from syncserver.db.database import Database
from syncserver.db.registry import DatabaseRegistry

__all__ = ["Database", "DatabaseRegistry"]
