"""The bundled SQL node-assignment backend (SQLite, MySQL/MariaDB, PostgreSQL).

Two tables, on their own :data:`metadata` (in ``nodes.sqluri``, which
defaults to the accounts database)::

    nodes        id            INTEGER primary key, autoincrement
                 url           VARCHAR(255) UNIQUE NOT NULL  (normalised, ends in /)
                 capacity      INTEGER NOT NULL     (most users it may be given)
                 current_load  INTEGER NOT NULL     (users assigned to it now)
                 available     BOOLEAN NOT NULL     (takes new users)
                 downed        BOOLEAN NOT NULL     (503 to its users, no new ones)
                 backoff       INTEGER NOT NULL     (X-Weave-Backoff seconds; 0 = none)

    user_nodes   username      VARCHAR(32) primary key (one assignment per user)
                 node_id       INTEGER NOT NULL -> nodes.id
                 assigned_at   BIGINT               (epoch seconds)

Keyed by username, not by account id, so that any authentication backend
(SQL, LDAP, a plugin) works with it.

How assignment stays exact under concurrency: one write transaction locks
every eligible node row (``SELECT ... FOR UPDATE`` in id order on MySQL and
PostgreSQL; SQLite's writers are serialised by
:meth:`syncserver.db.Database.writing`), picks one by the rule of
:mod:`syncserver.nodes` from the rows as locked, inserts the ``user_nodes``
row and increments the load. A concurrent first request for the same user
fails on the username's primary key, rolls back (its increment with it) and
reads the winner's assignment. Every writer locks node rows before touching
``user_nodes``, so writers never wait on each other in a cycle; a deadlock
or lock timeout reported by MySQL or PostgreSQL anyway is retried.
"""

import contextlib
import fractions
import time

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    case,
    exc,
    select,
)

from syncserver.db import Database
from syncserver.db.backed import DatabaseBacked
from syncserver.errors import ConfigError
from syncserver.nodes import Node, NodeBackend, NodeExists, NodeNotFound, NodesUnavailable

MAX_URL_LENGTH = 255

metadata = MetaData()

nodes = Table(
    "nodes", metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("url", String(MAX_URL_LENGTH), nullable=False, unique=True),
    Column("capacity", Integer(), nullable=False),
    Column("current_load", Integer(), nullable=False, server_default="0"),
    Column("available", Boolean(), nullable=False),
    Column("downed", Boolean(), nullable=False),
    Column("backoff", Integer(), nullable=False, server_default="0"),
    sqlite_autoincrement=True,
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)

user_nodes = Table(
    "user_nodes", metadata,
    Column("username", String(32), primary_key=True),
    Column("node_id", Integer(), ForeignKey("nodes.id"), nullable=False, index=True),
    Column("assigned_at", BigInteger(), nullable=True),
    mysql_engine="InnoDB",
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)

_WRITE_ATTEMPTS = 5


class SQLNodes(DatabaseBacked, NodeBackend):
    """Nodes and assignments in SQL; see the module docstring."""

    def __init__(self, database, *, owns_database=False):
        self._use_database(database, owns_database)

    @classmethod
    def from_settings(cls, settings):
        """A backend with a database of its own (the server shares one: :meth:`open`)."""
        _require_sqluri(settings)
        return cls(Database(settings.sqluri, key="nodes.sqluri", pool_size=settings.pool_size,
                            pool_timeout=settings.pool_timeout,
                            pool_recycle=settings.pool_recycle), owns_database=True)

    @classmethod
    def open(cls, settings, databases):
        _require_sqluri(settings)
        return cls(databases.database(settings.sqluri, "nodes.sqluri", settings.create_tables))

    def is_healthy(self):
        return self.database.table_answers(nodes.c.id)

    # --- the node list ------------------------------------------------------

    def list_nodes(self):
        with self._reading() as connection:
            rows = connection.execute(select(*_NODE_COLUMNS).order_by(nodes.c.id)).all()
        return [_node(row) for row in rows]

    def get_node(self, url):
        with self._reading() as connection:
            row = connection.execute(select(*_NODE_COLUMNS).where(nodes.c.url == url)).first()
        return None if row is None else _node(row)

    def add_node(self, url, capacity, available=True, downed=False, backoff=0):
        _check_url(url)
        values = dict(url=url, capacity=_count("capacity", capacity), current_load=0,
                      available=bool(available), downed=bool(downed),
                      backoff=_count("backoff", backoff))
        try:
            self._write(lambda connection: connection.execute(nodes.insert().values(**values)))
        except exc.IntegrityError:
            raise NodeExists(f"there is already a node {url}") from None
        return _node_from(values)

    def update_node(self, url, capacity=None, available=None, downed=None, backoff=None):
        changes = {}
        if capacity is not None:
            changes["capacity"] = _count("capacity", capacity)
        if backoff is not None:
            changes["backoff"] = _count("backoff", backoff)
        if available is not None:
            changes["available"] = bool(available)
        if downed is not None:
            changes["downed"] = bool(downed)

        def update(connection):
            node_id = _lock_node(connection, url)
            if changes:
                connection.execute(nodes.update().where(nodes.c.id == node_id).values(**changes))
            return _node(connection.execute(
                select(*_NODE_COLUMNS).where(nodes.c.id == node_id)).one())

        return self._write(update)

    def unassign_all(self, url):
        def unassign(connection):
            node_id = _lock_node(connection, url)
            count = connection.execute(
                user_nodes.delete().where(user_nodes.c.node_id == node_id)).rowcount
            connection.execute(nodes.update().where(nodes.c.id == node_id).values(current_load=0))
            return count

        return self._write(unassign)

    def remove_node(self, url):
        def remove(connection):
            node_id = _lock_node(connection, url)
            count = connection.execute(
                user_nodes.delete().where(user_nodes.c.node_id == node_id)).rowcount
            connection.execute(nodes.delete().where(nodes.c.id == node_id))
            return count

        return self._write(remove)

    # --- assignments ----------------------------------------------------------

    def assigned_node(self, username):
        with self._reading() as connection:
            return connection.execute(_ASSIGNED_URL.where(user_nodes.c.username == username)
                                      ).scalar_one_or_none()

    def assign_node(self, username):
        for _ in range(_WRITE_ATTEMPTS):
            url = self.assigned_node(username)
            if url is not None:
                return url
            try:
                return self._write(lambda connection: _assign(connection, username))
            except exc.IntegrityError:
                # A concurrent first request assigned this user first: read its answer.
                continue
        raise NodesUnavailable(f"could not assign a node to {username!r}: too much contention")

    def release_user(self, username):
        def release(connection):
            node_id = connection.execute(select(user_nodes.c.node_id).where(
                user_nodes.c.username == username)).scalar_one_or_none()
            if node_id is None:
                return False
            # Lock the node before the assignment, in the same order as _assign.
            connection.execute(select(nodes.c.id).where(nodes.c.id == node_id).with_for_update())
            deleted = connection.execute(user_nodes.delete().where(
                user_nodes.c.username == username, user_nodes.c.node_id == node_id)).rowcount
            if deleted:
                connection.execute(nodes.update().where(nodes.c.id == node_id).values(
                    current_load=case((nodes.c.current_load > 0, nodes.c.current_load - 1),
                                      else_=0)))
            return bool(deleted)

        return self._write(release)

    # --- plumbing -------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self):
        """A read connection whose outages become :class:`NodesUnavailable`."""
        with self.database.reading(NodesUnavailable) as connection:
            yield connection

    def _write(self, work):
        """Run ``work(connection)`` in one write transaction; retry deadlocks, translate outages."""
        return self.database.write_retrying(work, NodesUnavailable, _WRITE_ATTEMPTS,
                                            "node table write")


def _require_sqluri(settings):
    if not settings.sqluri:
        raise ConfigError(
            "nodes.sqluri is required by the SQL node backend "
            "(or set auth.sqluri or storage.sqluri, which it defaults to).")


_NODE_COLUMNS = (nodes.c.url, nodes.c.capacity, nodes.c.current_load, nodes.c.available,
                 nodes.c.downed, nodes.c.backoff)

_ASSIGNED_URL = select(nodes.c.url).select_from(
    user_nodes.join(nodes, user_nodes.c.node_id == nodes.c.id))


def _assign(connection, username):
    """Assign ``username`` inside the caller's transaction; see the module docstring."""
    candidates = connection.execute(
        select(nodes.c.id, nodes.c.url, nodes.c.capacity, nodes.c.current_load)
        .where(nodes.c.available.is_(True), nodes.c.downed.is_(False))
        .order_by(nodes.c.id)
        .with_for_update()).all()
    # Looked up only now, holding the node locks: a concurrent first request for
    # this user that committed while we waited is seen (READ COMMITTED), never
    # answered "null" because it took the last slot.
    existing = connection.execute(
        _ASSIGNED_URL.where(user_nodes.c.username == username)).scalar_one_or_none()
    if existing is not None:
        return existing
    open_nodes = [row for row in candidates if row.current_load < row.capacity]
    if not open_nodes:
        return None
    chosen = min(open_nodes, key=lambda row: (
        fractions.Fraction(row.current_load, row.capacity), row.current_load, row.id))
    connection.execute(user_nodes.insert().values(
        username=username, node_id=chosen.id, assigned_at=int(time.time())))
    connection.execute(nodes.update().where(nodes.c.id == chosen.id).values(
        current_load=nodes.c.current_load + 1))
    return chosen.url


def _lock_node(connection, url):
    node_id = connection.execute(
        select(nodes.c.id).where(nodes.c.url == url).with_for_update()).scalar_one_or_none()
    if node_id is None:
        raise NodeNotFound(f"there is no node {url}")
    return node_id


def _node(row):
    return Node(url=row.url, capacity=row.capacity, current_load=row.current_load,
                available=bool(row.available), downed=bool(row.downed), backoff=row.backoff)


def _node_from(values):
    return Node(**{field: values[field] for field in
                   ("url", "capacity", "current_load", "available", "downed", "backoff")})


def _check_url(url):
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError("a node URL starts with http:// or https://")
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"a node URL is at most {MAX_URL_LENGTH} characters")


def _count(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number, 0 or more")
    return value

