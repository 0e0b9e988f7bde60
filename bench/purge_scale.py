"""TTL purge at scale: how fast ``syncserver-admin purge-expired`` goes, and what syncing sees.

    .venv/bin/python bench/purge_scale.py [--databases sqlite,mysql,postgresql]
        [--datasets one-user,many-users] [--baseline 20] [--max-purge 600]
        [--mysql-url URL] [--postgresql-url URL] [--purge-options "--nice 0"]
        [--json FILE]

For each database and each data set, in a fresh database:

1. syncserver is started under gunicorn (2 gthread workers x 4 threads) on
   it, and four accounts are created through the User API;
2. the data set is written in bulk (bench/scale_data.py):
   ``one-user``: 10^6 history records of the first account, every second
   one expired (500,000 to purge), the three others 100 records each;
   ``many-users``: 10^4 users x 100 records (the four accounts among them),
   every tenth expired (100,000 to purge);
3. four client threads sync the four accounts in a loop (info/collections,
   the records newer than their last write, a POST of 10 records, 20 ms of
   pause) for ``--baseline`` seconds: the baseline latencies;
4. ``syncserver-admin purge-expired`` runs (a separate process, default
   options) while the same clients keep syncing; the purge rate comes from
   its own summary, the latencies are those of the requests made meanwhile.

Printed per database and data set: rows purged, seconds, rows/s, and p50/p99
of reads and writes of the large account and of the small ones, baseline
against during the purge, with the ratio of the p99s. A purge still running
after ``--max-purge`` seconds is stopped and its rate so far is given.

It is a benchmark, not a test. See docs/performance.rst.
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

import sqlalchemy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run
import scale_data
import scale_server

DATASETS = ("one-user", "many-users")


def build(dataset, url, accounts, progress, records=1_000_000):
    ids = [account.user_id for account in accounts]
    if dataset == "one-user":
        seconds = scale_data.fill(url, records, records, first_user=ids[0],
                                  expired_every=2, progress=progress)
        for number, user_id in enumerate(ids[1:], start=1):
            seconds += scale_data.fill(url, 100, 100, first_user=user_id,
                                       first_row=2 * records + number * 100)
        return seconds
    first = min(ids)
    if max(ids) - first >= 10_000:
        raise RuntimeError(f"the accounts' ids {ids} do not fit in one block of 10^4 users")
    return scale_data.fill(url, 1_000_000, 100, first_user=first, expired_every=10,
                           progress=progress)


def sqlite_file_size(url):
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):]
    return sum(os.path.getsize(path + suffix) for suffix in ("", "-wal")
               if os.path.exists(path + suffix))


def run_purge(server, limit, extra=()):
    """Run the admin command; returns (summary dict, seconds, finished)."""
    command = [sys.executable, "-m", "syncserver.admin", "-c", server.ini, "purge-expired",
               "--json"]
    command += list(extra)
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=server.workdir, start_new_session=True)
    try:
        out, err = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        out, err = process.communicate()
        return None, time.monotonic() - started, False
    if process.returncode != 0:
        raise RuntimeError(f"purge-expired failed ({process.returncode}): {err[-2000:]}")
    return json.loads(out), time.monotonic() - started, True


def measure(kind, dataset, url, options, workdir):
    print(f"\n== {kind}, {dataset}: {scale_data.describe(url)}", flush=True)
    scale_data.create_schema(url)
    server = scale_server.ScaleServer(options, workdir, url)
    server.prepare()
    server.start()
    clients = None
    try:
        accounts = [scale_server.Account(f"scale{n}@example.org") for n in range(4)]
        for account in accounts:
            server.register(account)
        scale_server.user_ids(url, accounts)

        def progress(done, total):
            if done % 250_000 == 0 or done == total:
                print(f"  built {done:,} of {total:,} rows", flush=True)

        seconds = build(dataset, url, accounts, progress, options.records)
        now = int(time.time())
        expired = scale_data.count_expired(url, now)
        size_before = sqlite_file_size(url)
        print(f"  data built in {seconds:.0f}s; {expired:,} expired rows", flush=True)
        innodb = innodb_sizes(url)
        if innodb:
            pool, table = innodb
            print(f"  InnoDB buffer pool {pool / 2**20:,.0f} MiB, items table {table / 2**20:,.0f} "
                  "MiB (data and indexes)", flush=True)
            if pool < table:
                print("  note: the buffer pool is smaller than the table: the purge and the "
                      "clients read pages from disk (see docs/performance.rst)", flush=True)
        labels = ["large" if dataset == "one-user" else "small"] + ["small"] * 3
        clients = scale_server.SyncClients(server.port, list(zip(accounts, labels, strict=True)))
        clients.start()
        time.sleep(3)  # warm-up: connections, credentials caches
        clients.phase = "baseline"
        time.sleep(options.baseline)
        clients.phase = "purge"
        summary, purge_seconds, finished = run_purge(server, options.max_purge,
                                                       options.purge_options.split())
        clients.phase = None
        clients.stop()
        left = scale_data.count_expired(url, now)
        purged = summary["purged"] if summary else expired - left
        result = {
            "database": kind, "dataset": dataset, "expired": expired, "purged": purged,
            "left": left, "seconds": summary["seconds"] if summary else purge_seconds,
            "finished": finished, "batches": summary["batches"] if summary else None,
            "sqlite_bytes_before": size_before, "sqlite_bytes_after": sqlite_file_size(url),
            "latency": {phase: {f"{label} {kind_}": values for (label, kind_), values
                                in clients.summary(phase).items()}
                        for phase in ("baseline", "purge")},
            "errors": clients.errors[:10], "error_count": len(clients.errors),
            "innodb_buffer_pool_and_table_bytes": innodb,
        }
        result["rate"] = purged / result["seconds"] if result["seconds"] else 0.0
        report(result)
        return result
    finally:
        if clients is not None:
            clients.stop()
        server.stop()


def innodb_sizes(url):
    """MySQL/MariaDB: (buffer pool bytes, items table bytes); None elsewhere."""
    engine = sqlalchemy.create_engine(url)
    try:
        if engine.dialect.name not in ("mysql", "mariadb"):
            return None
        with engine.connect() as connection:
            pool = connection.exec_driver_sql("SELECT @@innodb_buffer_pool_size").scalar()
            table = connection.exec_driver_sql(
                "SELECT data_length + index_length FROM information_schema.TABLES "
                "WHERE table_schema = DATABASE() AND table_name = 'items'").scalar()
        return int(pool), int(table or 0)
    finally:
        engine.dispose()


def report(result):
    state = "" if result["finished"] else f" (STOPPED after {result['seconds']:.0f}s)"
    print(f"  purged {result['purged']:,} of {result['expired']:,} rows in "
          f"{result['seconds']:.1f}s: {result['rate']:,.0f} rows/s{state}; "
          f"{result['left']:,} left", flush=True)
    if result["sqlite_bytes_before"]:
        print(f"  SQLite file: {result['sqlite_bytes_before'] / 2**20:.0f} MiB before, "
              f"{result['sqlite_bytes_after'] / 2**20:.0f} MiB after", flush=True)
    base, during = result["latency"]["baseline"], result["latency"]["purge"]
    for key in sorted(base):
        if key not in during:
            continue
        b, d = base[key], during[key]
        print(f"  {key:<12} baseline p50/p99 {b[1]:6.1f}/{b[2]:6.1f} ms (n={b[0]}), "
              f"during purge {d[1]:6.1f}/{d[2]:6.1f} ms (n={d[0]}): p99 x{d[2] / b[2]:.2f}",
              flush=True)
    if result["error_count"]:
        print(f"  {result['error_count']} failed requests, e.g. {result['errors'][:3]}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default=",".join(scale_data.DATABASES))
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--baseline", type=float, default=20, help="seconds of baseline (20)")
    parser.add_argument("--max-purge", type=float, default=600,
                        help="stop a purge running longer than this (600 s)")
    parser.add_argument("--mysql-url", help="MariaDB/MySQL server (a database is created)")
    parser.add_argument("--postgresql-url", help="PostgreSQL server (a database is created)")
    parser.add_argument("--records", type=int, default=1_000_000,
                        help="records of the one-user data set, half expired (10^6; 10^5 to "
                             "iterate quickly)")
    parser.add_argument("--purge-options", default="", metavar="'--nice 0 ...'",
                        help="more options for purge-expired (e.g. its priority: --nice 0)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw results here")
    options = parser.parse_args(argv)
    options.databases = [d for d in options.databases.split(",") if d]
    options.datasets = [d for d in options.datasets.split(",") if d]
    if any(d not in scale_data.DATABASES for d in options.databases):
        parser.error(f"--databases takes some of {', '.join(scale_data.DATABASES)}")
    if any(d not in DATASETS for d in options.datasets):
        parser.error(f"--datasets takes some of {', '.join(DATASETS)}")
    # What ScaleServer.start (bench/run.py) reads.
    options.workers, options.worker_class, options.threads = 2, "gthread", 4
    return options


def main(argv=None):
    options = parse_args(argv)
    signal.signal(signal.SIGINT, run._on_signal)
    signal.signal(signal.SIGTERM, run._on_signal)
    urls = {"mysql": options.mysql_url, "postgresql": options.postgresql_url}
    results = []
    workdir = tempfile.mkdtemp(prefix="syncserver-purge-scale-")
    try:
        for kind in options.databases:
            for dataset in options.datasets:
                with scale_data.scratch_database(kind, urls.get(kind)) as url:
                    results.append(measure(kind, dataset, url, options,
                                           os.path.join(workdir, f"{kind}-{dataset}")))
    finally:
        run.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    print("\ndatabase    data set    purged     seconds  rows/s   "
          "p99 x (large write / small write)")
    for r in results:
        during, base = r["latency"]["purge"], r["latency"]["baseline"]
        ratios = " / ".join(
            f"{during[key][2] / base[key][2]:.2f}" if key in during and key in base else "-"
            for key in ("large write", "small write"))
        print(f"{r['database']:<11} {r['dataset']:<11} {r['purged']:<10,} {r['seconds']:<8.1f} "
              f"{r['rate']:<8,.0f} {ratios}{'' if r['finished'] else '  (stopped)'}")
    if options.json:
        with open(options.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
