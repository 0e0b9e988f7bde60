"""Where syncserver's time goes on Sync 1.5: the benchmarked requests, in-process, under cProfile.

    .venv/bin/python bench/profile15_app.py [--requests 2000] [--top 15] [--dump DIR]

The 1.5 counterpart of bench/profile_app.py (whose folding into areas it
uses): no HTTP server and no load generator, each request a WSGI call on a
prepared environ carrying its own Hawk header (signed before the clock
starts), against fresh SQLite databases seeded as bench/sync15_run.py seeds
them. For each scenario it prints the CPU time per request of syncserver and
of the floor (bench/floor15_app.py), unprofiled, then syncserver's profile
folded into areas and its heaviest functions. A batch upload is timed whole
(10 POSTs, signed as they go, for both apps alike) and reported per POST.
"""

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import floor15_app  # noqa: E402
import profile_app  # noqa: E402
import run  # noqa: E402
import sync15_run  # noqa: E402

HOST = "127.0.0.1:8000"
NODE = f"http://{HOST}"
PREFIX = sync15_run.PREFIX
COLLECTION_PATH = sync15_run.COLLECTION_PATH

AREAS_15 = (
    ("Hawk + token (syncserver.web.hawk, sync15_auth, nonces, request_target, public_url; "
     "tokens, tokenlib, hawkauthlib, hmac, base64)",
     ("/syncserver/web/hawk.py", "/syncserver/web/sync15_auth.py", "/syncserver/web/nonces.py",
      "/syncserver/web/request_target.py", "/syncserver/web/public_url.py",
      "/syncserver/web/proxies.py", "/syncserver/protocol/tokens.py", "/tokenlib/",
      "/hawkauthlib/", "/hmac.py", "_hashlib", "base64", "/heapq")),
    ("BSO validation and request bodies (protocol.bso, bodies15, limits15, query15, conditions)",
     ("/syncserver/protocol/bso.py", "/syncserver/protocol/bodies15.py",
      "/syncserver/protocol/limits15.py", "/syncserver/protocol/query15.py",
      "/syncserver/protocol/conditions.py", "/syncserver/protocol/request_body.py")),
) + profile_app.AREAS


def signed_environ(credentials, method, target, body=b""):
    from syncserver.testing.sync15_client import hawk_header

    path, _, query = target.partition("?")
    environ = profile_app.environ(method, path, query, body)
    environ["HTTP_HOST"] = HOST
    environ["RAW_URI"] = environ["REQUEST_URI"] = target
    environ["HTTP_AUTHORIZATION"] = hawk_header(method, NODE + target, credentials)
    return environ


def call(app, environ, expect="2"):
    status = []

    def start_response(line, headers, exc_info=None):
        status.append(line)

    chunks = app(environ, start_response)
    data = b"".join(chunks)
    if hasattr(chunks, "close"):
        chunks.close()
    if not status[0].startswith(expect):
        raise RuntimeError(f"{environ['REQUEST_METHOD']} {environ['RAW_URI']}: {status[0]} "
                           f"{data[:200]!r}")
    return data


def upload(app, credentials, bodies):
    """One batch upload (len(bodies) POSTs, signed as they go)."""
    data = call(app, signed_environ(credentials, "POST", COLLECTION_PATH + "?batch=true",
                                    bodies[0]))
    batch = json.loads(data)["batch"]
    for index, body in enumerate(bodies[1:], start=1):
        query = f"batch={batch}" + ("&commit=true" if index == len(bodies) - 1 else "")
        call(app, signed_environ(credentials, "POST", f"{COLLECTION_PATH}?{query}", body))


def prepared(credentials, count):
    """{scenario: [environ, ...]} signed ahead (fresh nonces); batches sign as they go."""
    puts = run.put_requests(PREFIX)
    return {
        "info": [signed_environ(credentials, "GET", PREFIX + "/info/collections")
                 for _ in range(count)],
        "get100": [signed_environ(credentials, "GET", f"{COLLECTION_PATH}?{run.GET_QUERY}")
                   for _ in range(count)],
        "put1": [signed_environ(credentials, "PUT", puts[i % len(puts)][0],
                                puts[i % len(puts)][1].encode()) for i in range(count)],
    }


def environs_for(credentials, scenario, count):
    return [] if scenario == "batch" else prepared(credentials, count)[scenario]


def make_syncserver(workdir):
    from paste.deploy import loadapp

    db = os.path.join(workdir, "syncserver.db")
    ini = os.path.join(workdir, "bench.ini")
    with open(ini, "w") as handle:
        handle.write("[app:main]\n"
                     f"use = config:{os.path.join(HERE, 'bench.ini')}\n"
                     f"storage.sqluri = sqlite:///{db}\n"
                     f"auth.sqluri = sqlite:///{db}\n"
                     f"global.master_secret = {sync15_run.SECRET}\n")
    return loadapp("config:" + ini)


def make_floor(workdir):
    options = argparse.Namespace()
    server = sync15_run.Floor15(options, workdir)
    server.prepare()
    return floor15_app.Floor15App(server.db, sync15_run.SECRET, [HOST])


def run_scenario(app, credentials, scenario, environs, count):
    """Run ``count`` requests of a scenario (uploads: count // 10 POSTs... as whole uploads)."""
    if scenario == "batch":
        for i in range(max(1, count // sync15_run.BATCH_POSTS)):
            upload(app, credentials, [b.encode() for b in sync15_run.batch_bodies(i)])
        return
    for environ in environs[:count]:
        environ["wsgi.input"].seek(0)
        call(app, environ)


def main(argv=None):
    from syncserver.testing.sync15_client import mint_token

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000,
                        help="requests per scenario (2000; the batch upload a tenth of it)")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--dump", help="write each scenario's .prof file here")
    options = parser.parse_args(argv)
    profile_app.AREAS = AREAS_15
    credentials = mint_token(sync15_run.UID, NODE, sync15_run.SECRET,
                             duration=sync15_run.TOKEN_SECONDS)
    workdir = tempfile.mkdtemp(prefix="syncserver-profile15-")
    labels = dict(sync15_run.SCENARIOS)
    try:
        apps = {"syncserver": make_syncserver(workdir), "floor": make_floor(workdir)}
        seed = [json.dumps(batch).encode() for batch in run.seed_batches()]
        for app in apps.values():
            upload(app, credentials, seed)
        print(f"in-process, CPU time per request ({sys.version.split()[0]})\n")
        for scenario, _label in sync15_run.SCENARIOS:
            count = options.requests // 5 if scenario == "batch" else options.requests
            cpu = {}
            for name, app in apps.items():
                warm = max(20, count // 10)
                run_scenario(app, credentials, scenario, environs_for(credentials, scenario, warm),
                             warm)
                environs = environs_for(credentials, scenario, count)
                started = time.process_time()
                run_scenario(app, credentials, scenario, environs, count)
                cpu[name] = (time.process_time() - started) / count
            environs = environs_for(credentials, scenario, count)
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            run_scenario(apps["syncserver"], credentials, scenario, environs, count)
            profiler.disable()
            stats = pstats.Stats(profiler, stream=io.StringIO())
            if options.dump:
                os.makedirs(options.dump, exist_ok=True)
                stats.dump_stats(os.path.join(options.dump, f"{scenario}.prof"))
            total = sum(value[2] for value in stats.stats.values())
            print(f"=== {labels[scenario]}  ({count} requests)")
            print(f"  syncserver {cpu['syncserver'] * 1e3:7.3f} ms CPU/request   floor "
                  f"{cpu['floor'] * 1e3:7.3f} ms CPU/request   ratio "
                  f"{cpu['syncserver'] / cpu['floor']:.2f}x (floor/syncserver "
                  f"{cpu['floor'] / cpu['syncserver']:.2f})")
            print("  syncserver's time by area (exclusive, under cProfile):")
            for area, seconds in sorted(profile_app.fold(stats).items(), key=lambda i: -i[1]):
                if seconds / total >= 0.005:
                    print(f"    {seconds / total:6.1%}  {area}")
            print("  heaviest functions (inclusive):")
            for share, ncalls, name in profile_app.top_inclusive(stats, options.top, total):
                print(f"    {share:6.1%}  {ncalls / count:6.1f}/req  {name}")
            print()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
