"""Write latency and offset paging when one user holds 10^6 records, on each database.

    .venv/bin/python bench/write_scale.py [--databases sqlite,mysql,postgresql]
        [--repeat 40] [--mysql-url URL] [--postgresql-url URL] [--json FILE]

For each database, in a fresh database: user 1 gets 10^6 history records and
user 2 gets 100 (bench/scale_data.py, 300-byte payloads, nothing expired).
Then, through ``SQLStorage`` itself (no HTTP: the figures are the storage
layer's, every SQL statement of a write included), for the small and the
large user in turn:

- ``post100 new``: ``set_items`` of 100 new records (random 12-character
  ids, as clients make them: they land anywhere in the user's key range);
- ``post100 rewrite``: ``set_items`` rewriting 100 stored records;
- ``put1``: ``set_items`` of one stored record;
- ``put1 quota``: the same with a quota in force (storage.quota_size), as
  the Storage API writes when a quota applies;
- ``get offset``: ``get_items(limit=100, offset=50000, full)`` for each sort
  (large user only).

Each is repeated ``--repeat`` times; p50 and p99 are printed, and for the
writes the time of each SQL statement of one write on the large user (the
slowest first), which is how the culprit of a slow write is found. On
MariaDB each write scenario also prints the InnoDB buffer pool's reads from
disk per write (``Innodb_buffer_pool_reads``, server-wide).

It is a benchmark, not a test. See docs/performance.rst.
"""

import argparse
import base64
import inspect
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import scale_data
import sqlalchemy

from syncserver.db import Database
from syncserver.protocol.timestamps import now_centiseconds
from syncserver.storage import ItemQuery, ItemWrite
from syncserver.storage.sql import SQLStorage

LARGE, SMALL = 1, 2
COLLECTION = "history"
QUOTA_KB = 10 * 1024 * 1024  # 10 GiB: in force, never reached
PAYLOAD = "p" * 300


def quota_write(storage):
    """A write as the Storage API makes it when a quota applies, on this code's interface."""
    if "quota_kb" in inspect.signature(storage.set_items).parameters:
        def write(user, items):
            return storage.set_items(user, COLLECTION, items, now_centiseconds(),
                                     quota_kb=QUOTA_KB)
    else:  # before the quota moved into the write: two reads first, as the controller did
        def write(user, items):
            own = storage.get_user_quota(user)
            quota = QUOTA_KB if own is None else own
            assert quota * 1024 > storage.get_total_usage(user)
            return storage.set_items(user, COLLECTION, items, now_centiseconds())
    return write


class StatementTimer:
    """Times every SQL statement the engine runs while ``active``."""

    def __init__(self, engine):
        self.active = False
        self.times = []
        #: (statement, parameters, executemany) of every statement run while active.
        self.statements = []
        sqlalchemy.event.listen(engine, "before_cursor_execute", self._before)
        sqlalchemy.event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, _conn, _cursor, statement, _params, context, _many):
        if self.active:
            self.statements.append((statement, _params, _many))
            context._bench_started = time.perf_counter()

    def _after(self, _conn, _cursor, statement, _params, context, _many):
        if self.active and hasattr(context, "_bench_started"):
            elapsed = time.perf_counter() - context._bench_started
            self.times.append((elapsed, " ".join(statement.split())[:150]))


def timed(call, repeat):
    values = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        values.append(time.perf_counter() - started)
    return (scale_data.percentile(values, 0.5) * 1000, scale_data.percentile(values, 0.99) * 1000)


def analyze_statements(engine, statements):
    """MariaDB: ``ANALYZE FORMAT=JSON`` of each statement, run and rolled back.

    Returns ``[(statement, [(table, access type, key, rows read, r_total_time_ms)])]``.
    A statement run once per row (executemany) is analyzed with its first row.
    """
    found = []
    with engine.connect() as connection:
        for statement, params, many in statements:
            verb = statement.lstrip().split(None, 1)[0].upper()
            if verb not in ("SELECT", "INSERT", "UPDATE", "DELETE"):
                continue
            if many:
                params = params[0]
            transaction = connection.begin()
            try:
                plan = json.loads(connection.exec_driver_sql(
                    "ANALYZE FORMAT=JSON " + statement, params).scalar())
                tables = list(_plan_tables(plan))
            except sqlalchemy.exc.DBAPIError as error:  # an INSERT of ids now stored
                tables = [("not analyzed", str(error.orig)[:80])]
            finally:
                transaction.rollback()
            found.append((" ".join(statement.split())[:110], tables))
    return found


def _plan_tables(node):
    """(table, access, key, r_rows, r_total_time_ms) of every table in a MariaDB plan."""
    if isinstance(node, dict):
        if "table_name" in node:
            yield (node["table_name"], node.get("access_type"), node.get("key"),
                   node.get("r_rows"), node.get("r_total_time_ms"))
        for value in node.values():
            yield from _plan_tables(value)
    elif isinstance(node, list):
        for value in node:
            yield from _plan_tables(value)


def disk_reads(engine):
    """InnoDB's buffer pool reads from disk so far (MariaDB/MySQL), else None."""
    if engine.dialect.name not in ("mysql", "mariadb"):
        return None
    with engine.connect() as connection:
        return int(connection.exec_driver_sql(
            "SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_reads'").one()[1])


def measure(kind, url, options):
    print(f"\n== {kind}: {scale_data.describe(url)}", flush=True)
    scale_data.create_schema(url)
    seconds = scale_data.fill(url, 1_000_000, 1_000_000, first_user=LARGE)
    seconds += scale_data.fill(url, 100, 100, first_user=SMALL, first_row=2_000_000)
    print(f"  data built in {seconds:.0f}s", flush=True)
    storage = SQLStorage(Database(url), owns_database=True)
    timer = StatementTimer(storage.engine)
    write_with_quota = quota_write(storage)
    results = {}
    counter = [0]

    rng = random.Random(7)

    def new_items(count):
        counter[0] += 1
        return [ItemWrite(base64.urlsafe_b64encode(rng.randbytes(9)).decode(), payload=PAYLOAD,
                          sortindex=n) for n in range(count)]

    def stored_ids(user, count):
        return [record["id"] for record in storage.get_items(
            user, COLLECTION, ItemQuery(limit=count, sort="oldest"), False)]

    try:
        for user, label in ((SMALL, "small"), (LARGE, "large")):
            rewrite = [ItemWrite(item_id, payload=PAYLOAD) for item_id in stored_ids(user, 100)]
            one = rewrite[:1]
            scenarios = {
                "post100 new": lambda user=user: storage.set_items(
                    user, COLLECTION, new_items(100), now_centiseconds()),
                "post100 rewrite": lambda user=user, rewrite=rewrite: storage.set_items(
                    user, COLLECTION, rewrite, now_centiseconds()),
                "put1": lambda user=user, one=one: storage.set_items(
                    user, COLLECTION, one, now_centiseconds()),
                "put1 quota": lambda user=user, one=one: write_with_quota(user, one),
            }
            for name, call in scenarios.items():
                call()  # warm
                reads = disk_reads(storage.engine)
                results[f"{label} {name}"] = timed(call, options.repeat)
                if reads is not None:
                    results[f"disk reads per write, {label} {name}"] = (
                        (disk_reads(storage.engine) - reads) / options.repeat, 0.0)
                if label == "large" or kind == "mysql":
                    timer.times.clear()
                    timer.statements.clear()
                    timer.active = True
                    call()
                    timer.active = False
                    if label == "large":
                        results[f"statements {name}"] = sorted(timer.times, reverse=True)
                    if kind == "mysql" and options.analyze:
                        results[f"analyze {label} {name}"] = analyze_statements(
                            storage.engine, list(timer.statements))
        for sort in (None, "newest", "oldest", "index"):
            query = ItemQuery(limit=100, offset=50_000, sort=sort)
            call = lambda query=query: storage.get_items(LARGE, COLLECTION, query, True)  # noqa: E731
            call()
            results[f"large get offset=50000 sort={sort}"] = timed(
                call, max(3, options.repeat // 8))
    finally:
        storage.close()
    report(results)
    return results


def report(results):
    for name, value in results.items():
        if name.startswith(("statements", "analyze")):
            continue
        print(f"  {name:<34} p50 {value[0]:8.1f} ms   p99 {value[1]:8.1f} ms", flush=True)
    for name, value in results.items():
        if name.startswith("analyze"):
            print(f"  ANALYZE FORMAT=JSON, {name[8:]} (table, access, key, rows read, ms):")
            for statement, tables in value:
                print(f"    {statement}")
                for table in tables:
                    print(f"      {table}")
    for name, value in results.items():
        if name.startswith("statements"):
            print(f"  {name} (large user), one write:")
            for seconds, statement in value[:4]:
                print(f"    {seconds * 1000:7.2f} ms  {statement}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default=",".join(scale_data.DATABASES))
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--mysql-url")
    parser.add_argument("--postgresql-url")
    parser.add_argument("--analyze", action=argparse.BooleanOptionalAction, default=True,
                        help="MariaDB: ANALYZE FORMAT=JSON every statement of one write of "
                             "each user (run and rolled back)")
    parser.add_argument("--json", metavar="FILE")
    options = parser.parse_args(argv)
    options.databases = [d for d in options.databases.split(",") if d]
    if any(d not in scale_data.DATABASES for d in options.databases):
        parser.error(f"--databases takes some of {', '.join(scale_data.DATABASES)}")
    return options


def main(argv=None):
    options = parse_args(argv)
    urls = {"mysql": options.mysql_url, "postgresql": options.postgresql_url}
    all_results = {}
    for kind in options.databases:
        with scale_data.scratch_database(kind, urls.get(kind)) as url:
            all_results[kind] = measure(kind, url, options)
    print("\nscenario                         " + "".join(f"{k:>22}" for k in all_results))
    names = [n for n in next(iter(all_results.values()))
             if not n.startswith(("statements", "analyze"))]
    for name in names:
        cells = "".join(f"{r[name][0]:>10.1f}/{r[name][1]:<9.1f}  " for r in all_results.values())
        print(f"{name:<33}{cells}")
    print("(p50/p99 in ms)")
    if options.json:
        with open(options.json, "w") as handle:
            json.dump(all_results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
