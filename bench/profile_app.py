"""Where syncserver's time goes: the four benchmarked requests, in-process, under cProfile.

    .venv/bin/python bench/profile_app.py [--requests 2000] [--top 15] [--dump DIR]

No HTTP server and no load generator: each request is a WSGI call on a
prepared environ, against a fresh SQLite database seeded as bench/run.py
seeds it (1,000 bookmarks of ~500-byte payloads). For each scenario it prints

- the mean CPU time per request of syncserver and of the floor app
  (bench/floor_app.py), unprofiled, so the two compare directly;
- syncserver's profile folded into areas (WebOb, Routes, auth, SQLAlchemy,
  the sqlite3 driver, JSON, ...): the time spent in each area's own code,
  built-in calls counted in the area that called them;
- the heaviest functions by inclusive time.

CPU time (time.process_time) is measured, not wall time, so other load on
the machine does not skew the shares much.
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

import floor_app  # noqa: E402
import run  # noqa: E402

PREFIX = f"/1.1/{run.USERNAME}"


def environ(method, path, query="", body=b""):
    return {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
        "SCRIPT_NAME": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_AUTHORIZATION": run.AUTHORIZATION, "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0), "wsgi.multithread": True, "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def call(app, method, path, query="", body=b"", expect="2"):
    status = []

    def start_response(line, headers, exc_info=None):
        status.append(line)

    chunks = app(environ(method, path, query, body), start_response)
    data = b"".join(chunks)
    if hasattr(chunks, "close"):
        chunks.close()
    if not status[0].startswith(expect):
        raise RuntimeError(f"{method} {path}?{query}: {status[0]} {data[:200]!r}")
    return data


def scenario_calls():
    """(scenario, label, [callable(app)]) with the bodies bench/run.py sends."""
    posts = [body.encode() for body in run.post_bodies()]
    puts = [(path, body.encode()) for path, body in run.put_requests(PREFIX)]
    collection = f"{PREFIX}/storage/{run.COLLECTION}"
    return {
        "info": lambda app, i: call(app, "GET", f"{PREFIX}/info/collections"),
        "get100": lambda app, i: call(app, "GET", collection, run.GET_QUERY),
        "post100": lambda app, i: call(app, "POST", collection, body=posts[i % len(posts)]),
        "put1": lambda app, i: call(app, "PUT", puts[i % len(puts)][0],
                                    body=puts[i % len(puts)][1]),
    }


def make_syncserver(workdir):
    from paste.deploy import loadapp
    db = os.path.join(workdir, "syncserver.db")
    ini = os.path.join(workdir, "bench.ini")
    with open(ini, "w") as handle:
        handle.write("[app:main]\n"
                     f"use = config:{os.path.join(HERE, 'bench.ini')}\n"
                     f"storage.sqluri = sqlite:///{db}\n"
                     f"auth.sqluri = sqlite:///{db}\n")
    app = loadapp("config:" + ini)
    call(app, "PUT", f"/user/1.0/{run.USERNAME}",
         body=json.dumps({"password": run.PASSWORD, "email": run.EMAIL}).encode())
    return app


def make_floor(workdir):
    db = os.path.join(workdir, "floor.db")
    floor_app.init_db(db, run.USERNAME, run.PASSWORD, run.EMAIL)
    return floor_app.FloorApp(db)


def seed(app):
    for batch in run.seed_batches():
        call(app, "POST", f"{PREFIX}/storage/{run.COLLECTION}", body=json.dumps(batch).encode())


def time_per_request(app, fn, count):
    for i in range(min(50, count)):
        fn(app, i)
    started_cpu, started_wall = time.process_time(), time.perf_counter()
    for i in range(count):
        fn(app, i)
    return ((time.process_time() - started_cpu) / count,
            (time.perf_counter() - started_wall) / count)


# -- folding a profile into areas ---------------------------------------------------------

AREAS = (
    ("sqlite3 driver (C: SQL execution, fetch, commit)", ("sqlite3",)),
    ("SQLAlchemy (Core: connection, pool, compile cache, result rows)", ("/sqlalchemy/",)),
    ("WebOb (Request, Response, headers)", ("/webob/",)),
    ("Routes (URL matching)", ("/routes/", "/repoze/")),
    ("auth (Basic header, users SELECT wrapper, credentials cache HMAC)",
     ("/syncserver/auth/", "/hmac.py", "_hashlib", "base64")),
    ("JSON parse/render (json, syncserver.protocol.formats)",
     ("/json/", "_json", "/syncserver/protocol/formats.py")),
    ("WBO validation (syncserver.protocol.wbo, bodies)",
     ("/syncserver/protocol/wbo.py", "/syncserver/controllers/bodies.py")),
    ("timestamps (decimal)", ("/syncserver/protocol/timestamps.py", "decimal")),
    ("storage backend (syncserver/storage/sql.py, sqldb.py)",
     ("/syncserver/storage/", "/syncserver/sqldb.py")),
    ("app, routing table, controllers (syncserver)", ("/syncserver/",)),
    ("stdlib other (contextlib, dataclasses, threading, ...)", ("/lib/python3",)),
)


def area_of(key):
    filename, _line, name = key
    text = filename if filename != "~" else name
    for area, needles in AREAS:
        if any(needle in text for needle in needles):
            return area
    return None


def fold(stats):
    """Exclusive time per area; built-ins go to their callers' areas, pro rata."""
    totals = {}
    raw = stats.stats
    for key, (_cc, _nc, tt, _ct, callers) in raw.items():
        area = area_of(key)
        if key[0] == "~" and (area is None or area.startswith("stdlib")) and callers:
            caller_tt = sum(value[2] for value in callers.values()) or 1
            for caller, value in callers.items():
                share = tt * value[2] / caller_tt
                target = area_of(caller) or "other"
                totals[target] = totals.get(target, 0.0) + share
            continue
        area = area or "other"
        totals[area] = totals.get(area, 0.0) + tt
    return totals


def top_inclusive(stats, count, total):
    rows = []
    for key, (_cc, nc, _tt, ct, _callers) in stats.stats.items():
        filename, line, name = key
        if "profile_app.py" in filename or name in ("<lambda>", "<module>"):
            continue
        if filename == "~":
            label = name
        else:
            short = filename.split("site-packages/")[-1].split("/work/main/")[-1]
            label = f"{short}:{line}({name})"
        rows.append((ct, nc, label))
    rows.sort(reverse=True)
    return [(ct / total, nc, label) for ct, nc, label in rows[:count]]


# -- the same work, piece by piece, unprofiled ---------------------------------------------

def micro(fn, count):
    """Mean wall time of ``fn()`` in microseconds (after a warm-up)."""
    for _ in range(min(20, count)):
        fn()
    started = time.perf_counter()
    for _ in range(count):
        fn()
    return (time.perf_counter() - started) / count * 1e6


def capture_sql(app, fn):
    """The statements (SQL text, parameters) the app's engines run for one call of ``fn``."""
    from sqlalchemy import event

    seen = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters, executemany))

    candidates = (app.storage, app.auth, getattr(app.auth, "backend", None),
                  getattr(app.auth, "wrapped", None))
    engines = {id(engine): engine for engine in (getattr(backend, "engine", None)
                                                  for backend in candidates) if engine}
    for engine in engines.values():
        event.listen(engine, "before_cursor_execute", listener)
    try:
        fn()
    finally:
        for engine in engines.values():
            event.remove(engine, "before_cursor_execute", listener)
    return seen


def floor_breakdown(floor, count):
    """The same pieces for the floor app, for comparison."""
    uid = floor.authenticate({"HTTP_AUTHORIZATION": run.AUTHORIZATION}, run.USERNAME)
    bodies = [json.loads(body) for body in run.post_bodies()]
    body_bytes = run.post_bodies()[0].encode()
    put = floor_app.parse_wbo(dict(json.loads(run.put_requests(PREFIX)[0][1]), id="bmk000001"))
    rows = [[floor_app.parse_wbo(obj) for obj in objects] for objects in bodies]
    counter = iter(range(10 ** 9))
    environ_get = {"QUERY_STRING": run.GET_QUERY}
    pieces = [
        ("info", "floor: info_collections() (SQL + JSON)", lambda: floor.info_collections(uid)),
        ("get100", "floor: get_collection() (SQL + JSON of 100 records)",
         lambda: floor.get_collection(uid, run.COLLECTION, environ_get, now_centiseconds())),
        ("post100", "floor: json.loads of the body", lambda: json.loads(body_bytes)),
        ("post100", "floor: parse_wbo() x 100",
         lambda: [floor_app.parse_wbo(obj) for obj in bodies[0]]),
        ("post100", "floor: write(100 rows), one transaction",
         lambda: floor.write(uid, run.COLLECTION, rows[next(counter) % len(rows)],
                             now_centiseconds(), None)),
        ("put1", "floor: write(1 row), one transaction",
         lambda: floor.write(uid, run.COLLECTION, [put], now_centiseconds(), None)),
    ]
    return [(scenario, label, micro(fn, count // 10 if scenario == "post100" else count))
            for scenario, label, fn in pieces]


def now_centiseconds():
    return floor_app.now_centiseconds()


def breakdown(app, workdir, count):
    """Time the pieces of each request separately; returns [(scenario, label, microseconds)].

    Each piece is called directly, without cProfile, so functions making many
    small calls are not over-weighted. The "raw sqlite3" lines run the very
    statements syncserver ran (captured from its engines) on a plain
    connection to the same database. Only public or long-standing interfaces
    are used; a piece that cannot run is reported, not fatal.
    """
    from webob import Request, Response

    from syncserver import routing
    from syncserver.protocol import formats
    from syncserver.protocol.timestamps import now_centiseconds
    from syncserver.protocol.wbo import parse_wbo
    from syncserver.storage import ItemQuery
    from syncserver.web.basic_auth import authenticate_request

    storage, auth = app.storage, app.auth
    controller = app.controllers["storage"]
    uid = auth.authenticate(run.USERNAME, run.PASSWORD).user_id
    collection_path = f"{PREFIX}/storage/{run.COLLECTION}"
    query = ItemQuery(sort="newest", limit=100)
    records = storage.get_items(uid, run.COLLECTION, query, True)
    # Configured as syncserver's sqldb configures its connections (WAL, synchronous=NORMAL).
    raw = floor_app.connect(os.path.join(workdir, "syncserver.db"))
    bodies = [json.loads(body) for body in run.post_bodies()]
    body_bytes = run.post_bodies()[0].encode()
    put_item = parse_wbo(dict(json.loads(run.put_requests(PREFIX)[0][1]), id="bmk000001"),
                         262144)
    counter = iter(range(10 ** 9))

    def start_response(status, headers, exc_info=None):
        pass

    def webob_round_trip():
        request = Request(environ("GET", f"{PREFIX}/info/collections"))
        request.path_info, request.method, request.headers.get("Authorization")
        response = Response(body=b"{}", content_type="application/json", charset=None)
        response.headers["X-Weave-Timestamp"] = "1.00"
        b"".join(response(request.environ, start_response))

    def auth_step():
        authenticate_request(Request(environ("GET", f"{PREFIX}/info/collections")), auth,
                             run.USERNAME)

    prepared = [controller._validate_batch(objects)[0] for objects in bodies]

    def post_store_only():
        storage.set_items(uid, run.COLLECTION, prepared[next(counter) % len(prepared)],
                          now_centiseconds())

    def engine_round_trip():
        with storage.engine.connect():
            pass

    def raw_select(statements, needle):
        for statement, parameters, _executemany in statements:
            if needle in statement and statement.lstrip().upper().startswith("SELECT"):
                return lambda: raw.execute(statement, parameters).fetchall()
        raise LookupError(f"syncserver ran no SELECT with {needle!r}")

    def raw_replay(statements):
        """Run a write request's captured statements (and a COMMIT) on the raw connection."""
        if not statements or not statements[0][0].upper().startswith("BEGIN"):
            raise LookupError("the write did not start with BEGIN")

        def replay():
            for statement, parameters, executemany in statements:
                if executemany:
                    raw.executemany(statement, parameters)
                else:
                    raw.execute(statement, parameters or ()).fetchall()
            raw.execute("COMMIT")
        return replay

    calls = scenario_calls()
    sql_seen = {scenario: capture_sql(app, lambda fn=fn: fn(app, 7))
                for scenario, fn in calls.items()}

    pieces = [
        ("all", "WebOb: Request(environ) + a few attributes + Response + start_response",
         lambda: webob_round_trip),
        ("all", "Routes: routing.match() of the info/collections path",
         lambda: lambda: routing.match(app.mapper, "GET", f"{PREFIX}/info/collections")),
        ("all", "Routes: routing.match() of the collection path",
         lambda: lambda: routing.match(app.mapper, "POST", collection_path)),
        ("all", "timestamps: now_centiseconds()", lambda: now_centiseconds),
        ("all", "auth: authenticate_request() incl. its Request(environ)", lambda: auth_step),
        ("all", "auth: auth backend authenticate() (cached credentials)",
         lambda: lambda: auth.authenticate(run.USERNAME, run.PASSWORD)),
        ("all", "SQLAlchemy: engine.connect() + close (pool checkout and checkin)",
         lambda: engine_round_trip),
        ("info", "storage: get_collection_timestamps()",
         lambda: lambda: storage.get_collection_timestamps(uid)),
        ("info", "storage: its SELECT on a raw sqlite3 connection",
         lambda: raw_select(sql_seen["info"], "user_collections")),
        ("get100", "storage: get_items(newest, limit 100, full)",
         lambda: lambda: storage.get_items(uid, run.COLLECTION, query, True)),
        ("get100", "storage: its SELECT on a raw sqlite3 connection",
         lambda: raw_select(sql_seen["get100"], "FROM items")),
        ("get100", "render: formats.render_records(100 full records)",
         lambda: lambda: formats.render_records(records, True, formats.JSON)),
        ("post100", "parse: json.loads of the 56 KB body", lambda: lambda: json.loads(body_bytes)),
        ("post100", "validate: StorageController._validate_batch(100 objects)",
         lambda: lambda: controller._validate_batch(bodies[0])),
        ("post100", "storage: set_items(100 validated items), one transaction",
         lambda: post_store_only),
        ("post100", "storage: the same statements on a raw sqlite3 connection, + COMMIT",
         lambda: raw_replay(sql_seen["post100"])),
        ("put1", "storage: set_items(1 item), one transaction",
         lambda: lambda: storage.set_items(uid, run.COLLECTION, [put_item], now_centiseconds())),
        ("put1", "storage: the same statements on a raw sqlite3 connection, + COMMIT",
         lambda: raw_replay(sql_seen["put1"])),
    ]
    results = []
    for scenario, label, factory in pieces:
        n = count // 10 if scenario == "post100" else count
        try:
            results.append((scenario, label, micro(factory(), n)))
        except Exception as error:
            results.append((scenario, f"{label}: not measured ({type(error).__name__}: "
                                      f"{error})", float("nan")))
    raw.close()
    return results, sql_seen


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000,
                        help="requests per scenario (2000; POSTs use a fifth of it)")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--dump", help="write each scenario's .prof file here")
    options = parser.parse_args(argv)

    workdir = tempfile.mkdtemp(prefix="syncserver-profile-")
    try:
        sync_app = make_syncserver(workdir)
        floor = make_floor(workdir)
        seed(sync_app)
        seed(floor)
        calls = scenario_calls()
        labels = dict(run.SCENARIOS)
        print(f"in-process, CPU time per request ({sys.version.split()[0]})\n")
        for scenario, fn in calls.items():
            count = options.requests // 5 if scenario == "post100" else options.requests
            ours_cpu, ours_wall = time_per_request(sync_app, fn, count)
            floor_cpu, floor_wall = time_per_request(floor, fn, count)
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            for i in range(count):
                fn(sync_app, i)
            profiler.disable()
            stats = pstats.Stats(profiler)
            if options.dump:
                os.makedirs(options.dump, exist_ok=True)
                stats.dump_stats(os.path.join(options.dump, f"{scenario}.prof"))
            total = sum(value[2] for value in stats.stats.values())
            print(f"=== {labels[scenario]}  ({count} requests)")
            print(f"  syncserver {ours_cpu * 1e3:7.3f} ms CPU/request "
                  f"({ours_wall * 1e3:.3f} ms wall)   floor {floor_cpu * 1e3:7.3f} ms "
                  f"CPU/request ({floor_wall * 1e3:.3f} ms wall)   "
                  f"ratio {ours_cpu / floor_cpu:.1f}x")
            print("  syncserver's time by area (exclusive, under cProfile):")
            for area, seconds in sorted(fold(stats).items(), key=lambda item: -item[1]):
                if seconds / total >= 0.005:
                    print(f"    {seconds / total:6.1%}  {area}")
            print("  heaviest functions (inclusive):")
            for share, ncalls, label in top_inclusive(stats, options.top, total):
                print(f"    {share:6.1%}  {ncalls / count:6.1f}/req  {label}")
            print()
        pieces, sql_seen = breakdown(sync_app, workdir, options.requests)
        print("=== SQL statements per request of syncserver (as the driver received them; a "
              "cached login runs none)")
        for scenario, statements in sql_seen.items():
            print(f"  {labels[scenario]}: {len(statements)}")
            for statement, _parameters, executemany in statements:
                text = " ".join(statement.split())
                print(f"    {'executemany ' if executemany else ''}{text[:110]}")
        print()
        print("=== the pieces, timed one by one (unprofiled, microseconds per call)")
        pieces += floor_breakdown(floor, options.requests)
        order = [name for name, _ in run.SCENARIOS]
        pieces.sort(key=lambda piece: -1 if piece[0] == "all" else order.index(piece[0]))
        for scenario, label, micro_seconds in pieces:
            print(f"  {scenario:8} {micro_seconds:9.1f} us  {label}")
        sync_app.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
