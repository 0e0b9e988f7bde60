"""Large stores built fast, for the scale benchmarks (purge_scale, write_scale, stream_memory).

Rows are generated inside the database by one ``INSERT ... SELECT`` per
slice (a recursive CTE on SQLite, ``generate_series`` on PostgreSQL, the
Sequence engine's ``seq_<a>_to_<b>`` tables on MariaDB), so a million items
take seconds to a minute instead of the hours the HTTP API would. Row ``n``
of a build belongs to user ``first_user + n // per_user``; its id is ``n``
in 12 hex digits, so rows arrive in primary-key order (random-order
inserts into a clustered key bigger than MariaDB's default 128 MiB buffer
pool took 8 minutes a million), while ``modified`` and ``sortindex`` are a
bijective scramble of ``n``: the time and index orders are unrelated to the
id order, as they are for client GUIDs.

Databases: ``sqlite`` (a file in a temporary folder), ``mysql`` and
``postgresql`` (a fresh database on the server named by
``SYNCSERVER_BENCH_MYSQL_URL`` / ``SYNCSERVER_BENCH_POSTGRESQL_URL``, default
root on 127.0.0.1:3306 and postgres on 127.0.0.1:5432), dropped afterwards.
"""

import contextlib
import os
import shutil
import tempfile
import time
import uuid

import sqlalchemy

from syncserver import migrations
from syncserver.db import Database

SERVER_URLS = {
    "mysql": os.environ.get("SYNCSERVER_BENCH_MYSQL_URL", "mysql+mysqldb://root@127.0.0.1:3306/"),
    "postgresql": os.environ.get("SYNCSERVER_BENCH_POSTGRESQL_URL",
                                 "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
}
DATABASES = ("sqlite", "mysql", "postgresql")
#: Rows generated per INSERT ... SELECT (one transaction each).
SLICE = 50_000
#: The scramble of row numbers into ids (odd, so a bijection modulo 2**32).
_SCRAMBLE = 2654435761
LIVE_TTL_SECONDS = 30 * 86400
NEVER_EXPIRES = 9_999_999_999


@contextlib.contextmanager
def scratch_database(kind, url=None):
    """A fresh, empty database of ``kind``; yields its URL and removes it at the end.

    ``url`` names an existing server (its database part is replaced).
    """
    if kind == "sqlite":
        folder = tempfile.mkdtemp(prefix="syncserver-scale-")
        try:
            yield f"sqlite:///{os.path.join(folder, 'scale.db')}"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    server = sqlalchemy.engine.make_url(url or SERVER_URLS[kind])
    name = "syncserver_scale_" + uuid.uuid4().hex[:10]
    admin = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        if kind == "mysql":
            connection.exec_driver_sql(
                f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        else:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            if kind == "mysql":
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
            else:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def create_schema(url):
    """Every table, through the migrations (as ``storage.create_tables`` does)."""
    database = Database(url)
    try:
        migrations.ensure_schema(database)
    finally:
        database.close()


def _has_column(engine, table, column):
    return column in {c["name"] for c in sqlalchemy.inspect(engine).get_columns(table)}


def _generator(dialect, lo, hi):
    """``(FROM clause, expression of n)`` producing n = lo .. hi - 1."""
    if dialect == "sqlite":
        return (f"(WITH RECURSIVE seq(n) AS (SELECT {lo} UNION ALL SELECT n + 1 FROM seq "
                f"WHERE n + 1 < {hi}) SELECT n FROM seq) AS s", "s.n")
    if dialect == "postgresql":
        return f"generate_series({lo}::bigint, {hi - 1}::bigint) AS s(n)", "s.n"
    return f"seq_{lo}_to_{hi - 1} AS s", "s.seq"


def _item_id(dialect, n):
    if dialect == "sqlite":
        return f"printf('%012x', {n})"
    if dialect == "postgresql":
        return f"lpad(to_hex({n}), 12, '0')"
    return f"LPAD(LOWER(HEX({n})), 12, '0')"


def _scrambled(n):
    """A bijection of 0 .. 2**32 - 1 onto itself: unrelated to n's order."""
    return f"(({n} * {_SCRAMBLE}) % 4294967296)"


def _div(dialect, a, b):
    return f"({a} DIV {b})" if dialect in ("mysql", "mariadb") else f"({a} / {b})"


def fill(url, rows, per_user, first_user=1, collection_id=4, payload_bytes=300,
         expired_every=0, base_stamp=None, now=None, first_row=0, progress=None):
    """Insert ``rows`` items (numbers ``first_row`` ..): ``per_user`` per user from ``first_user``.

    Every ``expired_every``-th row (0: none) has expired (TTL a minute to a
    day ago); the others expire in 30 days. Then the users' rows in
    ``storage_users`` and ``user_collections`` are written as the server
    would have left them (the usage total too, where the schema has it).
    Returns the seconds it took.
    """
    started = time.monotonic()
    now = int(time.time()) if now is None else now
    base_stamp = (now * 100 - 10 ** 8) if base_stamp is None else base_stamp
    engine = _builder_engine(url)
    dialect = engine.dialect.name
    payload = ("{\"ciphertext\": \"" + "A" * payload_bytes)[:payload_bytes - 2] + "\"}"
    params = {"coll": collection_id, "payload": payload, "size": len(payload),
              "stamp": base_stamp, "now": now, "live": now + LIVE_TTL_SECONDS,
              "first_user": first_user}
    try:
        for lo in range(first_row, first_row + rows, SLICE):
            hi = min(lo + SLICE, first_row + rows)
            source, n = _generator(dialect, lo, hi)
            relative = f"({n} - {first_row})"
            expired = (f"{n} % {expired_every} = 0" if expired_every else "1 = 0")
            statement = (
                "INSERT INTO items (userid, collection, id, sortindex, modified, payload, "
                "payload_size, ttl) "
                f"SELECT :first_user + {_div(dialect, relative, per_user)}, :coll, "
                f"{_item_id(dialect, n)}, {_scrambled(n)} % 1000, "
                f":stamp + {_scrambled(n)} % 100000000, "
                ":payload, :size, "
                f"CASE WHEN {expired} THEN :now - 60 - ({n} % 86400) "
                f"ELSE :live + ({n} % 86400) END FROM {source}")
            with engine.begin() as connection:
                connection.execute(sqlalchemy.text(statement), params)
            if progress:
                progress(hi - first_row, rows)
        users = -(-rows // per_user)
        _write_user_rows(engine, first_user, users, collection_id)
        if dialect == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.exec_driver_sql("VACUUM ANALYZE items")
                # The load's dirty pages written now (needs a superuser; skipped without):
                # else the checkpoint it started ends during the measurement, and its
                # fsyncs stalled every commit for 50-100 ms (the purge's writes at
                # x5 their baseline p99, the load's cost, not the purge's).
                _checkpoint(connection)
        elif dialect in ("mysql", "mariadb"):
            with engine.connect() as connection:
                connection.exec_driver_sql("ANALYZE TABLE items")
        else:
            with engine.begin() as connection:
                connection.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()
    return time.monotonic() - started


def _builder_engine(url):
    """An engine for bulk work; SQLite gets a page cache big enough for the indexes."""
    engine = sqlalchemy.create_engine(url)
    if engine.dialect.name == "sqlite":
        @sqlalchemy.event.listens_for(engine, "connect")
        def _big_cache(dbapi_connection, _record):
            dbapi_connection.execute("PRAGMA cache_size = -524288")  # 512 MiB

    return engine


def _write_user_rows(engine, first_user, users, collection_id):
    """storage_users and user_collections of the users just filled, from their items."""
    usage = _has_column(engine, "storage_users", "usage_bytes")
    last = users + first_user
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(
            "DELETE FROM user_collections WHERE userid >= :a AND userid < :b "
            "AND collection = :c"), {"a": first_user, "b": last, "c": collection_id})
        connection.execute(sqlalchemy.text(
            "INSERT INTO user_collections (userid, collection, modified) "
            "SELECT userid, collection, MAX(modified) FROM items "
            "WHERE userid >= :a AND userid < :b AND collection = :c GROUP BY userid, collection"),
            {"a": first_user, "b": last, "c": collection_id})
        connection.execute(sqlalchemy.text(
            "DELETE FROM storage_users WHERE userid >= :a AND userid < :b"),
            {"a": first_user, "b": last})
        columns = "userid, last_modified" + (", usage_bytes" if usage else "")
        values = "userid, MAX(modified)" + (", SUM(payload_size)" if usage else "")
        connection.execute(sqlalchemy.text(
            f"INSERT INTO storage_users ({columns}) SELECT {values} FROM items "
            "WHERE userid >= :a AND userid < :b GROUP BY userid"),
            {"a": first_user, "b": last})


def _checkpoint(connection):
    """PostgreSQL: CHECKPOINT, when the bench's role may (a superuser or pg_checkpoint)."""
    try:
        connection.exec_driver_sql("CHECKPOINT")
    except sqlalchemy.exc.DBAPIError as error:
        print(f"  (no CHECKPOINT after the load: {error.orig})", flush=True)


def count_expired(url, now=None):
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sqlalchemy.text(
                "SELECT COUNT(*) FROM items WHERE ttl <= :now"),
                {"now": int(time.time()) if now is None else now}).scalar()
    finally:
        engine.dispose()


def percentile(values, fraction):
    """The value below which ``fraction`` of ``values`` fall (nearest rank)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def describe(url):
    """The URL without password, for printing."""
    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
