"""What the Redis cache buys: syncserver on MariaDB without and with Redis, in the same run.

    .venv/bin/python bench/redis_run.py [--duration 4] [--rounds 3]
                                        [--scenarios info,meta,put1,post100]

Two syncserver instances are started under gunicorn exactly as bench/run.py
starts one (same workers, same ini apart from the storage keys), each on a
fresh MariaDB database (``SYNCSERVER_BENCH_MYSQL_URL``, default root on
127.0.0.1:3306); the second has ``storage.backend = redis`` in front of it,
with a private redis-server started for the run on a free port. Each gets the
benchmark user, 1,000 bookmarks and a meta/global record; the answers are
checked; then the scenarios are measured on both in turn, round after round,
with bench/run.py's wrk runner, and the best round of each is kept. The
databases are dropped and every process stopped at the end.

It is a benchmark, not a test. See bench/README.md and docs/performance.rst.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run  # bench/run.py, next to this file

MYSQL_ADMIN_URL = os.environ.get("SYNCSERVER_BENCH_MYSQL_URL",
                                 "mysql+mysqldb://root@127.0.0.1:3306/")
SCENARIOS = (
    ("info", "GET info/collections"),
    ("meta", "GET meta/global"),
    ("put1", "PUT 1 WBO"),
    ("post100", "POST 100 WBOs (~500 B)"),
)
META_PATH = "/storage/meta/global"


class PrivateRedis:
    """A redis-server for this run only, on a free loopback port, without persistence."""

    def __init__(self, workdir):
        self.port = run.free_port()
        self.workdir = workdir
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install redis)")
        log_path = os.path.join(self.workdir, "redis.log")
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                 "--save", "", "--appendonly", "no", "--dir", self.workdir],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        run._children.append(self.process)
        run.wait_for_port(self.port, self.process, log_path)

    def stop(self):
        if self.process is not None:
            run.stop(self.process)
            self.process = None


class MySQLSyncServer(run.SyncServer):
    """syncserver on its own fresh MariaDB database."""

    name = "mariadb"
    redis_url = None

    def prepare(self):
        import sqlalchemy

        self.database = "syncserver_bench_" + uuid.uuid4().hex[:10]
        admin = sqlalchemy.create_engine(MYSQL_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.exec_driver_sql(f"CREATE DATABASE {self.database} "
                                           "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        except sqlalchemy.exc.SQLAlchemyError as error:
            raise RuntimeError(f"cannot create a database at {MYSQL_ADMIN_URL}: {error}") from None
        finally:
            admin.dispose()
        url = sqlalchemy.engine.make_url(MYSQL_ADMIN_URL).set(database=self.database)
        sqluri = url.render_as_string(hide_password=False)
        self.ini = os.path.join(self.workdir, "bench.ini")
        lines = ["[app:main]", f"use = config:{os.path.join(run.HERE, 'bench.ini')}",
                 f"storage.sqluri = {sqluri}", f"auth.sqluri = {sqluri}"]
        if self.redis_url:
            lines += ["storage.backend = redis", "storage.wrapped_backend = sql",
                      f"storage.redis_url = {self.redis_url}"]
        with open(self.ini, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        check = subprocess.run(
            [sys.executable, "-c", "import syncserver_wsgi"], cwd=run.HERE, capture_output=True,
            text=True, env=dict(os.environ, SYNCSERVER_BENCH_INI=self.ini), timeout=120)
        if check.returncode != 0:
            raise RuntimeError("the syncserver app does not load:\n" + check.stderr[-2000:])

    def drop_database(self):
        import sqlalchemy

        if getattr(self, "database", None):
            admin = sqlalchemy.create_engine(MYSQL_ADMIN_URL, isolation_level="AUTOCOMMIT")
            try:
                with admin.connect() as connection:
                    connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.database}")
            finally:
                admin.dispose()
            self.database = None


class RedisMySQLSyncServer(MySQLSyncServer):
    """The same, with the Redis cache in front of the database."""

    name = "mariadb+redis"


def setup(server):
    """Start, create the user, seed bookmarks and meta/global, check the answers."""
    print(f"\n== {server.name}", flush=True)
    server.prepare()
    server.start()
    client = run.HTTP(server.port)
    try:
        server.create_user(client)
        run.seed(server, client)
        meta = json.dumps({"id": "global", "payload": json.dumps({"syncID": "bench"})})
        status, _, body = client.request("PUT", server.prefix + META_PATH, meta)
        if status != 200:
            raise RuntimeError(f"PUT meta/global gave {status}: {body[:200]!r}")
        problems = run.check_answers(server, client, run.post_bodies(),
                                     run.put_requests(server.prefix))
        status, _, body = client.request("GET", server.prefix + META_PATH)
        if status != 200 or json.loads(body).get("id") != "global":
            problems.append(f"GET meta/global: {status} {body[:100]!r}")
    finally:
        client.close()
    server.scripts = run.write_scripts(server.workdir, server.prefix)
    server.scripts["meta"] = (server.scripts["info"][0], server.prefix + META_PATH)
    for problem in problems:
        print(f"  CHECK FAILED: {problem}", flush=True)
    server.note = "; ".join(problems)


def print_table(results, names):
    without, with_redis = names
    header = ["scenario", f"{without} req/s", f"{with_redis} req/s", "ratio",
              f"{without} p50/p99", f"{with_redis} p50/p99"]
    rows = []
    for scenario, label in SCENARIOS:
        pair = [results.get(name, {}).get(scenario) for name in names]
        if not any(pair):
            continue
        rps = [None if r is None or r["failed"] else r["rps"] for r in pair]
        ratio = f"{rps[1] / rps[0]:.2f}x" if all(rps) else "-"
        rows.append([label] + [f"{value:.0f}" if value else "-" for value in rps] + [ratio] + [
            "-" if r is None else f"{run.ms(r['p50'])}/{run.ms(r['p99'])}" for r in pair])
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    print("\n" + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=4, help="seconds per measurement (4)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the best is kept (3)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up (1)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--worker-class", default="sync", choices=("sync", "gthread"))
    parser.add_argument("--threads", type=int, default=2, help="threads with gthread (2)")
    parser.add_argument("--quiet-wait", type=float, default=3.0,
                        help="wait up to this long for idle CPUs before each measurement (3)")
    parser.add_argument("--scenarios", default=",".join(name for name, _ in SCENARIOS))
    parser.add_argument("--json", metavar="FILE", help="also write the raw results here")
    options = parser.parse_args(argv)
    options.scenarios = [name.strip() for name in options.scenarios.split(",") if name.strip()]
    known = [name for name, _ in SCENARIOS]
    if not options.scenarios or any(name not in known for name in options.scenarios):
        parser.error(f"--scenarios takes some of: {', '.join(known)}")
    return options


def main(argv=None):
    options = parse_args(argv)
    started = time.monotonic()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    signal.signal(signal.SIGINT, run._on_signal)
    signal.signal(signal.SIGTERM, run._on_signal)
    run.SCENARIOS = SCENARIOS  # run_rounds measures these, in this order
    print(f"syncserver on MariaDB without and with Redis: gunicorn {options.workers} workers "
          f"({options.worker_class}), wrk -t{options.wrk_threads} -c{options.connections}, "
          f"best of {options.rounds} x {options.duration}s per scenario")
    tmp = tempfile.mkdtemp(prefix="syncserver-bench-redis-")
    cache = PrivateRedis(tmp)
    servers, results = [], {}
    try:
        cache.start()
        RedisMySQLSyncServer.redis_url = cache.url
        for cls in (MySQLSyncServer, RedisMySQLSyncServer):
            server = cls(options, tmp)
            servers.append(server)
            setup(server)
        results = run.run_rounds(servers, options)
    finally:
        for server in servers:
            server.stop()
            server.drop_database()
        cache.stop()
        run.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(results, [MySQLSyncServer.name, RedisMySQLSyncServer.name])
    for server in servers:
        if server.note:
            print(f"note ({server.name}): {server.note}")
    print(f"\nrun time {time.monotonic() - started:.0f}s")
    if options.json:
        with open(options.json, "w") as handle:
            json.dump({"options": vars(options), "results": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
