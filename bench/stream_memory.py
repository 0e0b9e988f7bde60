"""How much a server process grows while a client reads a large collection, in each format.

    .venv/bin/python bench/stream_memory.py [--records 100000] [--payload 2048]
        [--databases sqlite] [--mysql-url URL] [--postgresql-url URL]

For each database: a fresh database, syncserver under gunicorn with one sync
worker (so one process serves every request), one account whose history
collection gets ``--records`` records of ``--payload`` bytes
(bench/scale_data.py). Then, for each format (JSON, application/newlines,
application/whoisi), a client reads ``GET storage/history?full=1`` (no
limit) in 64 KiB pieces while a sampler reads the worker's resident memory
(VmRSS) every 20 ms; the worker's peak is also reset before and read after
each request (``/proc/<pid>/clear_refs``, ``VmHWM``). Printed: the body
size, the time, the worker's RSS before and its peak during the read, and
the growth.

It is a benchmark, not a test. See docs/performance.rst.
"""

import argparse
import http.client
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run
import scale_data
import scale_server

FORMATS = ("application/json", "application/newlines", "application/whoisi")


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def reset_peak(pid):
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def worker_pid(master_pid):
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = run._stat_fields(entry)
            except (OSError, ValueError):
                continue
            if int(fields[1]) == master_pid:
                return int(entry)
    raise RuntimeError("no gunicorn worker found")


def read_collection(port, account, accept):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.request("GET", f"{account.prefix}/storage/history?full=1",
                       headers={"Authorization": account.authorization, "Accept": accept})
    response = connection.getresponse()
    size = 0
    while True:
        piece = response.read(65536)
        if not piece:
            break
        size += len(piece)
    records = response.getheader("X-Weave-Records")
    connection.close()
    return response.status, size, records


def measure(kind, url, options, workdir):
    print(f"\n== {kind}: {scale_data.describe(url)}", flush=True)
    scale_data.create_schema(url)
    options.workers, options.worker_class, options.threads = 1, "sync", 1
    server = scale_server.ScaleServer(options, workdir, url)
    server.prepare()
    server.start()
    results = []
    try:
        account = scale_server.Account("stream@example.org")
        server.register(account)
        scale_server.user_ids(url, [account])
        seconds = scale_data.fill(url, options.records, options.records,
                                  first_user=account.user_id, payload_bytes=options.payload)
        print(f"  {options.records:,} records of {options.payload} bytes built in "
              f"{seconds:.0f}s", flush=True)
        pid = worker_pid(server.process.pid)
        fresh = status_kb(pid, "VmRSS")
        read_collection(server.port, account, "application/json")  # warm: imports, caches
        print(f"  worker RSS {fresh / 1024:.1f} MiB fresh, {status_kb(pid, 'VmRSS') / 1024:.1f} "
              "MiB after a first full read", flush=True)
        for accept in FORMATS:
            before = status_kb(pid, "VmRSS")
            peak_reset = reset_peak(pid)
            samples = [before]
            done = threading.Event()

            def sample(samples=samples, done=done):
                while not done.is_set():
                    samples.append(status_kb(pid, "VmRSS"))
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.monotonic()
            status, size, records = read_collection(server.port, account, accept)
            elapsed = time.monotonic() - started
            done.set()
            sampler.join()
            peak = max(samples)
            if peak_reset:
                peak = max(peak, status_kb(pid, "VmHWM"))
            result = {"database": kind, "format": accept, "status": status, "bytes": size,
                      "records": records, "seconds": elapsed, "rss_before_kb": before,
                      "rss_peak_kb": peak, "growth_kb": peak - before}
            results.append(result)
            print(f"  {accept:<22} {status} {records} records, {size / 2**20:7.1f} MiB in "
                  f"{elapsed:5.1f}s; worker RSS {before / 1024:6.1f} MiB before, peak "
                  f"{peak / 1024:6.1f} MiB: +{(peak - before) / 1024:.1f} MiB", flush=True)
    finally:
        server.stop()
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--payload", type=int, default=2048)
    parser.add_argument("--databases", default="sqlite")
    parser.add_argument("--mysql-url")
    parser.add_argument("--postgresql-url")
    options = parser.parse_args(argv)
    urls = {"mysql": options.mysql_url, "postgresql": options.postgresql_url}
    import tempfile
    workdir = tempfile.mkdtemp(prefix="syncserver-stream-memory-")
    try:
        for kind in [d for d in options.databases.split(",") if d]:
            with scale_data.scratch_database(kind, urls.get(kind)) as url:
                measure(kind, url, options, os.path.join(workdir, kind))
    finally:
        run.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
