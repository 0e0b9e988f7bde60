"""Benchmark syncserver against a stdlib floor and weave-minimal, on loopback, with wrk.

    .venv/bin/python bench/run.py [--duration 4] [--rounds 3] [--connections 16]
                                  [--only syncserver,floor,weave-minimal]
                                  [--skip-weave-minimal] [--scenarios info,get100,...]
                                  [--worker-class sync|gthread] [--json FILE]

Each server is started under gunicorn (same workers and worker class for
all) on a free 127.0.0.1 port with a fresh SQLite database in a temporary
folder; the benchmark user is created and 1,000 bookmarks of ~500-byte
payloads are seeded through its HTTP API; the four requests are checked to
answer what the protocol says. Then, with every server running but idle,
each scenario is measured with wrk on each server in turn, round after
round, each measurement after a warm-up; the best round is kept. The servers
are stopped at the end, on errors and on Ctrl-C. The table printed at the
end gives requests/s, the ratios to the floor and to weave-minimal, latency
percentiles, requests per CPU-second and PASS/MISS per target.

It is a benchmark, not a test: it exits 0 even when a target is missed.
See bench/README.md and docs/performance.rst.
"""

import argparse
import base64
import contextlib
import hashlib
import http.client
import importlib.metadata
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WEAVE_VENV = os.path.join(HERE, ".venv-weave-minimal")

EMAIL = "bench@example.org"
PASSWORD = "bench-password-0123"
USERNAME = base64.b32encode(hashlib.sha1(EMAIL.lower().encode()).digest()).decode().lower()
AUTHORIZATION = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
COLLECTION = "bookmarks"
SEED_RECORDS = 1000
POST_BODIES = 50          # distinct POST bodies, cycled by wrk
PUT_BODIES = 200          # distinct PUT requests, cycled by wrk
PAYLOAD_BYTES = 500

SCENARIOS = (
    ("info", "GET info/collections"),
    ("get100", "GET 100 full of 1,000"),
    ("post100", "POST 100 WBOs (~500 B)"),
    ("put1", "PUT 1 WBO"),
)
GET_QUERY = "full=1&limit=100&sort=newest"
MIN_FLOOR_RATIO = 0.6
MIN_WEAVE_RATIO = 3.0
MAX_NON_2XX = 0.01

OLD_SERVER_NOTE = (
    "Mozilla's Python 2 Sync 1.1 server (server-core + server-storage + server-reg, 2010-2013) "
    "is not measured: it was never published on PyPI (SyncCore, SyncStorage and SyncReg are not "
    "there) and its source is only in archived GitHub repositories, which this machine cannot "
    "reach. A Python 2.7 interpreter alone would not do (Debian bookworm has none; pyenv may "
    "have one).")

_children = []


# -- data -------------------------------------------------------------------------------

def make_payload(rng):
    """A ~500-byte payload shaped like an encrypted Sync record (JSON with base64 fields)."""
    def b64(n):
        return base64.b64encode(rng.randbytes(n)).decode()
    head = {"IV": b64(16), "hmac": rng.randbytes(32).hex()}
    overhead = len(json.dumps({"ciphertext": "", **head}))
    cipher_len = (PAYLOAD_BYTES - overhead) * 3 // 4
    return json.dumps({"ciphertext": b64(cipher_len), **head})


def seed_ids():
    return [f"bmk{index:06d}" for index in range(SEED_RECORDS)]


def make_wbo(rng, item_id, sortindex):
    return {"id": item_id, "sortindex": sortindex, "payload": make_payload(rng)}


def seed_batches():
    """The 1,000 seed records, in POSTs of 100."""
    rng = random.Random(1)
    ids = seed_ids()
    records = [make_wbo(rng, item_id, rng.randrange(0, 1000)) for item_id in ids]
    return [records[start:start + 100] for start in range(0, len(records), 100)]


def post_bodies():
    """POST bodies: each rewrites 100 of the seeded records with new payloads.

    Body ``k`` covers block ``k % 10`` of the seed ids, so the collection stays
    at 1,000 records while every POST really rewrites 100 rows.
    """
    rng = random.Random(2)
    ids = seed_ids()
    bodies = []
    for k in range(POST_BODIES):
        block = ids[(k % 10) * 100:(k % 10) * 100 + 100]
        bodies.append(json.dumps([make_wbo(rng, item_id, rng.randrange(0, 1000))
                                  for item_id in block]))
    return bodies


def put_requests(prefix):
    """(path, body) pairs: PUTs of one WBO over the first 200 seeded ids."""
    rng = random.Random(3)
    ids = seed_ids()
    return [(f"{prefix}/storage/{COLLECTION}/{ids[k % SEED_RECORDS]}",
             json.dumps({"payload": make_payload(rng), "sortindex": rng.randrange(0, 1000)}))
            for k in range(PUT_BODIES)]


# -- processes --------------------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process, timeout=10):
    """Stop a server we started: SIGTERM to its process group, SIGKILL if it lingers."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # Workers that outlived their master (there should be none).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if process in _children:
        _children.remove(process)


def stop_all():
    for process in list(_children):
        stop(process)


def _on_signal(signum, _frame):
    stop_all()
    print(f"\ninterrupted (signal {signum}); servers stopped", file=sys.stderr)
    sys.exit(130)


def wait_for_port(port, process, log_path, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; log:\n{tail(log_path)}")
        with contextlib.suppress(OSError):
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        time.sleep(0.1)
    raise RuntimeError(f"server did not listen on {port} within {timeout}s; log:\n{tail(log_path)}")


def tail(path, lines=30):
    with contextlib.suppress(OSError):
        with open(path, errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    return ""


class HTTP:
    """A tiny keep-alive client for setup and checks (not for measuring)."""

    def __init__(self, port):
        self.port = port
        self.connection = None

    def request(self, method, path, body=None, auth=True, timeout=120):
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = AUTHORIZATION
        data = body.encode() if isinstance(body, str) else body
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port,
                                                             timeout=timeout)
            try:
                self.connection.request(method, path, body=data, headers=headers)
                response = self.connection.getresponse()
                payload = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                return response.status, dict(response.getheaders()), payload
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None


# -- servers ----------------------------------------------------------------------------

class Server:
    """How to install, start and register a user on one server under test."""

    name = ""
    prefix = f"/1.1/{USERNAME}"

    #: The WSGI servers this one can be measured under (see :meth:`start`).
    wsgi_servers = ("gunicorn",)

    def __init__(self, options, workdir, wsgi="gunicorn"):
        self.options = options
        self.wsgi = wsgi
        self.workdir = os.path.join(workdir, wsgi, self.name)
        os.makedirs(self.workdir)
        self.log_path = os.path.join(self.workdir, "server.log")
        self.port = None
        self.process = None
        self.note = ""

    def prepare(self):
        """Install what is missing; raise RuntimeError with the reason if impossible."""

    def gunicorn_command(self):
        raise NotImplementedError

    def environment(self):
        return {}

    def create_user(self, client):
        raise NotImplementedError

    def paste_ini(self):
        """The ``[app:main]`` section of the ini ``paster serve`` runs (waitress)."""
        raise NotImplementedError

    def start(self):
        self.port = free_port()
        if self.wsgi == "waitress":
            return self.start_waitress()
        options = self.options
        command = self.gunicorn_command() + [
            "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(options.workers),
            "--worker-class", options.worker_class,
            # gunicorn silently turns "sync" with threads > 1 into gthread.
            "--threads", str(options.threads if options.worker_class == "gthread" else 1),
            "--backlog", "2048",
            "--keep-alive", "5",
            "--timeout", "120",
            "--graceful-timeout", "5",
            "--log-level", "warning",
        ]
        env = dict(os.environ, **self.environment())
        env.pop("PYTHONPATH", None)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            env=env, cwd=self.workdir, start_new_session=True)
        _children.append(self.process)
        wait_for_port(self.port, self.process, self.log_path)

    def start_waitress(self):
        """``paster serve`` with development.ini's own ``[server:main]``: waitress, its threads.

        Only the port is overridden (``port=N`` on the command line, as the
        dev ini documents), so this is the server a newcomer's ``paster serve
        development.ini`` runs: ``egg:syncserver#waitress``, one process;
        ``--waitress-option`` adds options to the section, for every server.
        """
        ini = os.path.join(self.workdir, "waitress.ini")
        with open(ini, "w") as handle:
            handle.write(self.paste_ini()
                         + "\n[server:main]\n"
                         f"use = config:{os.path.join(ROOT, 'development.ini')}\n"
                         + "".join(f"{option}\n" for option in self.options.waitress_options))
        paster = os.path.join(os.path.dirname(sys.executable), "paster")
        command = [paster, "serve", ini, f"port={self.port}", "host=127.0.0.1"]
        env = dict(os.environ, **self.environment())
        env.pop("PYTHONPATH", None)
        env.update(self.waitress_environment())
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            env=env, cwd=self.workdir, start_new_session=True)
        _children.append(self.process)
        wait_for_port(self.port, self.process, self.log_path)

    def waitress_environment(self):
        return {}

    def stop(self):
        if self.process is not None:
            stop(self.process)
            self.process = None


class SyncServer(Server):
    name = "syncserver"
    wsgi_servers = ("gunicorn", "waitress")

    def paste_ini(self):
        with open(self.ini) as handle:
            return handle.read()

    def prepare(self):
        try:
            import paste.deploy  # noqa: F401

            import syncserver  # noqa: F401
        except ImportError as error:
            raise RuntimeError(f"syncserver is not importable here ({error}); "
                               "run: .venv/bin/pip install -e '.[bench]'") from None
        db = self.db = os.path.join(self.workdir, "syncserver.db")
        self.ini = os.path.join(self.workdir, "bench.ini")
        with open(self.ini, "w") as handle:
            handle.write("[app:main]\n"
                         f"use = config:{os.path.join(HERE, 'bench.ini')}\n"
                         f"storage.sqluri = sqlite:///{db}\n"
                         f"auth.sqluri = sqlite:///{db}\n")
        # Load it once here: a broken configuration fails now, with its message.
        check = subprocess.run(
            [sys.executable, "-c", "import syncserver_wsgi"], cwd=HERE, capture_output=True,
            text=True, env=dict(os.environ, SYNCSERVER_BENCH_INI=self.ini), timeout=120)
        if check.returncode != 0:
            raise RuntimeError("the syncserver app does not load:\n" + check.stderr[-2000:])

    def gunicorn_command(self):
        return [sys.executable, "-m", "gunicorn", "--chdir", HERE, "syncserver_wsgi:application"]

    def environment(self):
        return {"SYNCSERVER_BENCH_INI": self.ini}

    def create_user(self, client):
        status, _, body = client.request(
            "PUT", f"/user/1.0/{USERNAME}",
            json.dumps({"password": PASSWORD, "email": EMAIL}), auth=False)
        if status != 200:
            raise RuntimeError(f"creating the user gave {status}: {body[:300]!r}")


class Floor(Server):
    name = "floor"
    wsgi_servers = ("gunicorn", "waitress")

    def paste_ini(self):
        return ("[app:main]\n"
                "paste.app_factory = floor_app:app_factory\n"
                f"db = {self.db}\n")

    def waitress_environment(self):
        return {"PYTHONPATH": HERE}

    def prepare(self):
        sys.path.insert(0, HERE)
        import floor_app
        self.db = os.path.join(self.workdir, "floor.db")
        floor_app.init_db(self.db, USERNAME, PASSWORD, EMAIL)

    def gunicorn_command(self):
        return [sys.executable, "-m", "gunicorn", "--chdir", HERE, "floor_app:application"]

    def environment(self):
        return {"FLOOR_DB": self.db}

    def create_user(self, client):
        pass  # created in the database by prepare(): the floor has no User API


class WeaveMinimal(Server):
    name = "weave-minimal"

    def prepare(self):
        python = os.path.join(WEAVE_VENV, "bin", "python")
        gunicorn_version = importlib.metadata.version("gunicorn")
        wanted = ["weave-minimal==1.5.1", "werkzeug==0.16.1", f"gunicorn=={gunicorn_version}",
                  "setuptools<81"]  # weave-minimal imports pkg_resources
        if not os.path.exists(python):
            print(f"  creating {os.path.relpath(WEAVE_VENV, ROOT)} (first use)", flush=True)
            subprocess.run([sys.executable, "-m", "venv", WEAVE_VENV], check=True)
        probe = subprocess.run(
            [python, "-c", "import weave, werkzeug, gunicorn; print(werkzeug.__version__, "
                           "gunicorn.__version__)"], capture_output=True, text=True)
        if probe.returncode != 0 or probe.stdout.split() != ["0.16.1", gunicorn_version]:
            print("  installing " + " ".join(wanted), flush=True)
            install = subprocess.run([python, "-m", "pip", "install", "-q", *wanted],
                                     capture_output=True, text=True)
            if install.returncode != 0:
                raise RuntimeError("pip could not install weave-minimal:\n"
                                   + install.stderr[-2000:])
        self.data_dir = os.path.join(self.workdir, "data")
        self.python = python

    def gunicorn_command(self):
        # weave-minimal builds its `application` only when argv[0] ends with "gunicorn".
        return [os.path.join(WEAVE_VENV, "bin", "gunicorn"), "weave:application"]

    def environment(self):
        return {"DATA_DIR": self.data_dir, "ENABLE_REGISTRATION": "1"}

    def create_user(self, client):
        status, _, body = client.request(
            "PUT", f"/user/1.0/{USERNAME}", json.dumps({"password": PASSWORD, "email": EMAIL}),
            auth=False)
        if status != 200:
            raise RuntimeError(f"creating the user gave {status}: {body[:300]!r}")


class WeaveMinimalOwnServer(WeaveMinimal):
    """weave-minimal as its README runs it: its own command, werkzeug's threaded server.

    Not part of the default run (the comparison uses gunicorn for everyone);
    ``--only weave-minimal-own`` measures it for reference.
    """

    name = "weave-minimal-own"

    def start(self):
        self.port = free_port()
        command = [os.path.join(WEAVE_VENV, "bin", "weave-minimal"), "--host", "127.0.0.1",
                   "--port", str(self.port), "--data-dir", self.data_dir,
                   "--enable-registration"]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=self.workdir, start_new_session=True)
        _children.append(self.process)
        wait_for_port(self.port, self.process, self.log_path)


SERVERS = {cls.name: cls for cls in (SyncServer, Floor, WeaveMinimal, WeaveMinimalOwnServer)}


# -- checks -----------------------------------------------------------------------------

def seed(server, client):
    for batch in seed_batches():
        status, _, body = client.request("POST", f"{server.prefix}/storage/{COLLECTION}",
                                         json.dumps(batch))
        result = json.loads(body) if status == 200 else None
        if status != 200 or len(result.get("success", [])) != len(batch) or result.get("failed"):
            raise RuntimeError(f"seeding gave {status}: {body[:300]!r}")


def check_answers(server, client, bodies, puts):
    """The four benchmarked requests answer what the protocol says, and writes are real."""
    problems = []
    prefix = server.prefix
    status, _, body = client.request("GET", f"{prefix}/info/collections")
    if status != 200 or COLLECTION not in json.loads(body or b"{}"):
        problems.append(f"info/collections: {status} {body[:100]!r}")
    status, _, body = client.request("GET", f"{prefix}/storage/{COLLECTION}?{GET_QUERY}")
    records = json.loads(body) if status == 200 else []
    if (status != 200 or len(records) != 100
            or not all(len(r.get("payload", "")) >= PAYLOAD_BYTES - 20 for r in records)):
        problems.append(f"GET full: {status}, {len(records)} records")
    status, _, body = client.request("GET", f"{prefix}/storage/{COLLECTION}")
    count = len(json.loads(body)) if status == 200 else -1
    if count != SEED_RECORDS:
        problems.append(f"the collection holds {count} records, not {SEED_RECORDS}")
    posted = json.loads(bodies[0])
    status, _, body = client.request("POST", f"{prefix}/storage/{COLLECTION}", bodies[0])
    result = json.loads(body) if status == 200 else {}
    if status != 200 or len(result.get("success", [])) != 100 or result.get("failed"):
        problems.append(f"POST: {status} {body[:200]!r}")
    status, _, body = client.request("GET", f"{prefix}/storage/{COLLECTION}?{GET_QUERY}")
    newest = {r["id"]: r.get("payload") for r in json.loads(body)} if status == 200 else {}
    if newest != {wbo["id"]: wbo["payload"] for wbo in posted}:
        problems.append("after a POST, the 100 newest records are not the ones just written")
    path, put_body = puts[0]
    status, _, body = client.request("PUT", path, put_body)
    try:
        float(body)
    except ValueError:
        status = f"{status} (body {body[:80]!r})"
    if status != 200:
        problems.append(f"PUT: {status}")
    return problems


def sqlite_shape(path):
    """{table: (primary key columns, sorted index column lists)} of the storage tables."""
    import sqlite3
    shape = {}
    connection = sqlite3.connect(path)
    try:
        for table in ("items", "user_collections", "storage_users"):
            info = connection.execute(f"PRAGMA table_info({table})").fetchall()
            key = tuple(row[1] for row in sorted(info, key=lambda row: row[5]) if row[5])
            indexes = []
            for row in connection.execute(f"PRAGMA index_list({table})").fetchall():
                if row[3] == "pk":
                    continue
                columns = connection.execute(f"PRAGMA index_info({row[1]})").fetchall()
                indexes.append(tuple(column[2] for column in sorted(columns)))
            shape[table] = (key, sorted(indexes))
    finally:
        connection.close()
    return shape


def compare_schemas(servers):
    """The floor must do its work on the same tables and indexes as syncserver."""
    by_name = {server.name: server for server in servers}
    if "syncserver" not in by_name or "floor" not in by_name:
        return
    ours = sqlite_shape(by_name["syncserver"].db)
    floor = sqlite_shape(by_name["floor"].db)
    if ours == floor:
        print("\nschema: the floor's tables, keys and indexes are syncserver's", flush=True)
        return
    print("\nwarning: the floor's schema differs from syncserver's; the comparison is unfair:",
          flush=True)
    for table in ours:
        if ours[table] != floor.get(table):
            print(f"  {table}: syncserver {ours[table]}, floor {floor.get(table)}", flush=True)


# -- wrk --------------------------------------------------------------------------------

LUA_COMMON = r"""
wrk.headers["Authorization"] = "%(auth)s"
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %%d, "duration_us": %%d, "bytes": %%d, "connect": %%d, ' ..
    '"read": %%d, "write": %%d, "status": %%d, "timeout": %%d, "p50": %%d, "p90": %%d, ' ..
    '"p99": %%d, "max": %%d, "mean": %%f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
"""

LUA_CYCLE = r"""
local reqs = {}
local index = 0

function init(args)
  local file = assert(io.open("%(data)s", "rb"))
  for line in file:lines() do
    local tab = string.find(line, "\t", 1, true)
    local path = string.sub(line, 1, tab - 1)
    local body = string.sub(line, tab + 1)
    local headers = {}
    for name, value in pairs(wrk.headers) do headers[name] = value end
    reqs[#reqs + 1] = wrk.format("%(method)s", path, headers, body)
  end
  file:close()
  -- each wrk thread starts at a different place in the cycle
  index = math.random(#reqs) - 1
end

function request()
  index = index %% #reqs + 1
  return reqs[index]
end
"""


def write_scripts(tmp, prefix):
    """Lua scripts and request data for each scenario; returns {scenario: (script, path)}."""
    common = LUA_COMMON % {"auth": AUTHORIZATION}
    scripts = {}
    for scenario in ("info", "get100"):
        path = os.path.join(tmp, f"{scenario}.lua")
        with open(path, "w") as handle:
            handle.write("wrk.method = \"GET\"\n" + common)
        url_path = (f"{prefix}/info/collections" if scenario == "info"
                    else f"{prefix}/storage/{COLLECTION}?{GET_QUERY}")
        scripts[scenario] = (path, url_path)
    cycles = {
        "post100": ("POST", [(f"{prefix}/storage/{COLLECTION}", body) for body in post_bodies()]),
        "put1": ("PUT", put_requests(prefix)),
    }
    for scenario, (method, pairs) in cycles.items():
        data = os.path.join(tmp, f"{scenario}.data")
        with open(data, "w") as handle:
            for url_path, body in pairs:
                assert "\n" not in body and "\t" not in url_path
                handle.write(f"{url_path}\t{body}\n")
        path = os.path.join(tmp, f"{scenario}.lua")
        with open(path, "w") as handle:
            handle.write(common + LUA_CYCLE % {"data": data, "method": method})
        scripts[scenario] = (path, pairs[0][0])
    return scripts


def run_wrk(port, script, url_path, duration, connections, threads):
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
               "--timeout", "30s", "-s", script, f"http://127.0.0.1:{port}{url_path}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 90)
    for line in done.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            result = json.loads(line[len("BENCHJSON "):])
            seconds = result["duration_us"] / 1e6
            result["rps"] = result["requests"] / seconds if seconds else 0.0
            errors = result["connect"] + result["read"] + result["write"] + result["timeout"]
            result["non2xx_share"] = (result["status"] / result["requests"]
                                      if result["requests"] else 1.0)
            result["socket_errors"] = errors
            result["failed"] = result["requests"] == 0 or result["non2xx_share"] > MAX_NON_2XX
            return result
    raise RuntimeError(f"wrk gave no result:\n{done.stdout}\n{done.stderr}")


# -- CPU accounting -----------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as handle:
        text = handle.read()
    return text[text.rindex(")") + 2:].split()


def process_tree_ticks(root_pid):
    """CPU ticks (user + system) of ``root_pid`` and its direct children (gunicorn workers)."""
    return sum(process_tree_detail(root_pid).values())


def process_tree_detail(root_pid):
    """``{pid: ticks}`` for ``root_pid`` and each of its direct children."""
    ticks = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat_fields(entry)
        except (OSError, ValueError):
            continue
        if int(entry) == root_pid or int(fields[1]) == root_pid:
            ticks[int(entry)] = int(fields[11]) + int(fields[12])
    return ticks


def machine_busy_ticks():
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values[:8]) - idle, sum(values[:8])


def children_ticks():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * CLOCK_TICKS


class CPUWatch:
    """How much CPU the server, wrk and everything else used while measuring."""

    def __init__(self, server_pid):
        self.server_pid = server_pid
        self.start = (machine_busy_ticks(), process_tree_detail(server_pid), children_ticks(),
                      time.monotonic())

    def stop(self):
        (busy0, total0), detail0, wrk0, _started = self.start
        busy1, total1 = machine_busy_ticks()
        detail1 = process_tree_detail(self.server_pid)
        used = {pid: ticks - detail0.get(pid, 0) for pid, ticks in detail1.items()}
        server = sum(used.values())
        wrk = children_ticks() - wrk0
        elapsed_ticks = max(total1 - total0, 1)  # all CPUs
        busy = busy1 - busy0
        # How the load fell on the workers: with keep-alive connections, the worker
        # that accepted a connection serves all of its requests.
        workers = sorted((ticks for pid, ticks in used.items() if pid != self.server_pid),
                         reverse=True)
        shares = [ticks / server for ticks in workers] if server else []
        return {"server_cpu": server / elapsed_ticks, "wrk_cpu": wrk / elapsed_ticks,
                "other_cpu": max(0.0, (busy - server - wrk) / elapsed_ticks),
                "machine_busy": busy / elapsed_ticks, "worker_shares": shares}


def wait_idle(server, limit=60.0):
    """Let a server finish what wrk left queued before anything else is measured."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = process_tree_ticks(server.process.pid)
        time.sleep(0.3)
        if process_tree_ticks(server.process.pid) - before <= 1:
            return
    print(f"  warning: {server.name} was still busy {limit:.0f}s after wrk stopped", flush=True)


# -- the run ----------------------------------------------------------------------------

def setup_server(server, tmp):
    """Install, start, create the user, seed and check one server; leaves it running."""
    print(f"\n== {server.name}", flush=True)
    server.prepare()
    server.start()
    client = HTTP(server.port)
    try:
        server.create_user(client)
        started = time.monotonic()
        seed(server, client)
        print(f"  started on 127.0.0.1:{server.port}; seeded {SEED_RECORDS} records in "
              f"{time.monotonic() - started:.1f}s", flush=True)
        server.scripts = write_scripts(server.workdir, server.prefix)
        problems = check_answers(server, client, post_bodies(), put_requests(server.prefix))
    finally:
        client.close()
    for problem in problems:
        print(f"  CHECK FAILED: {problem}", flush=True)
    if not problems:
        print("  checked: the four requests answer as the protocol says; POST and PUT write",
              flush=True)
    server.note = "; ".join(problems)


def wait_quiet(limit, threshold=0.15):
    """Wait (at most ``limit`` seconds) until other processes leave the CPUs mostly idle.

    Every server is idle at this point, so whatever is busy is someone else.
    Returns the load seen last.
    """
    deadline = time.monotonic() + limit
    while True:
        busy0, total0 = machine_busy_ticks()
        time.sleep(0.5)
        busy1, total1 = machine_busy_ticks()
        load = (busy1 - busy0) / max(total1 - total0, 1)
        if load < threshold or time.monotonic() >= deadline:
            return load
        time.sleep(0.5)


#: Fewer completed requests than this in one measurement: measure again, longer.
MIN_REQUESTS = 30


def measure(server, scenario, options):
    script, url_path = server.scripts[scenario]
    if options.warmup:
        run_wrk(server.port, script, url_path, options.warmup, options.connections,
                options.wrk_threads)
        wait_idle(server)
    duration = options.duration
    lopsided = 0
    while True:
        wait_quiet(options.quiet_wait)
        watch = CPUWatch(server.process.pid)
        result = run_wrk(server.port, script, url_path, duration, options.connections,
                         options.wrk_threads)
        result.update(watch.stop())
        result["duration"] = duration
        wait_idle(server)
        if result["requests"] < MIN_REQUESTS and duration < 4 * options.duration:
            duration = 4 * options.duration  # a slow server: too few samples, measure longer
            continue
        # gthread keeps connections alive: whichever worker accepted a connection serves
        # all its requests, and now and then one worker accepts all of wrk's connections
        # and the other idles. That measures the accept lottery, not the server: retry.
        shares = result["worker_shares"]
        if (options.worker_class == "gthread" and len(shares) > 1 and shares[0] > 0.8
                and lopsided < 3):
            lopsided += 1
            print(f"  ({server.name}: one worker served {shares[0]:.0%} of the load; "
                  "measuring again)", flush=True)
            continue
        return result


def run_rounds(servers, options):
    """Each scenario on each server in turn, ``rounds`` times; keeps each one's best round.

    Interleaving the servers scenario by scenario means a burst of load from
    something else on the machine hits one round, not one server.
    """
    results = {server.name: {} for server in servers}
    for round_number in range(1, options.rounds + 1):
        print(f"\n-- round {round_number} of {options.rounds}", flush=True)
        for scenario, label in SCENARIOS:
            if scenario not in options.scenarios:
                continue
            for server in servers:
                result = measure(server, scenario, options)
                kept = results[server.name].get(scenario)
                result["rounds"] = (kept["rounds"] if kept else []) + [round(result["rps"], 1)]
                if kept is None or _better(result, kept):
                    results[server.name][scenario] = result
                else:
                    kept["rounds"] = result["rounds"]
                flag = ""
                if result["failed"]:
                    flag = (f"  FAILED: {result['status']} non-2xx of {result['requests']} "
                            f"({result['non2xx_share']:.1%})")
                if result["socket_errors"]:
                    flag += f"  socket errors: {result['socket_errors']}"
                split = ""
                if len(result["worker_shares"]) > 1:
                    split = "  workers " + "/".join(
                        f"{share:.0%}" for share in result["worker_shares"])
                print(f"  {label:<23} {server.name:<14}{result['rps']:9.1f} req/s  "
                      f"p50 {ms(result['p50']):>8}  p99 {ms(result['p99']):>8}  "
                      f"cpu: server {result['server_cpu']:4.0%} wrk {result['wrk_cpu']:4.0%} "
                      f"other {result['other_cpu']:4.0%}{split}{flag}", flush=True)
    return results


def _better(new, old):
    if new["failed"] != old["failed"]:
        return not new["failed"]
    return new["rps"] > old["rps"]


def ms(microseconds):
    return f"{microseconds / 1000:.1f}ms"


SHORT = {"syncserver": "syncserver", "floor": "floor", "weave-minimal": "weave-min",
         "weave-minimal-own": "weave-min(own)"}


def print_table(all_results, names):
    """The results table, the CPU efficiency figures and PASS/MISS per target."""
    base = "syncserver"
    others = [name for name in SERVERS if name != base and name in names]

    def result_of(name, scenario):
        return all_results.get(name, {}).get(scenario)

    def rps(name, scenario):
        result = result_of(name, scenario)
        return None if result is None or result["failed"] else result["rps"]

    def cell(name, scenario):
        result = result_of(name, scenario)
        if result is None:
            return "-"
        return f"{result['rps']:.0f}" + (" (FAILED)" if result["failed"] else "")

    def ratio(ours, theirs, name):
        if not (ours and theirs):
            return "-"
        return f"{ours / theirs:.2f}" if name == "floor" else f"{ours / theirs:.1f}x"

    scenarios = [(scenario, label) for scenario, label in SCENARIOS
                 if any(scenario in results for results in all_results.values())]
    header = ["scenario", "syncserver req/s"]
    for name in others:
        header += [f"{SHORT[name]} req/s", f"vs {SHORT[name]}"]
    header += [f"{SHORT[name]} p50/p99" for name in [base] + others]
    rows, verdicts = [], []
    for scenario, label in scenarios:
        ours = rps(base, scenario)
        row = [label, cell(base, scenario)]
        for name in others:
            row += [cell(name, scenario), ratio(ours, rps(name, scenario), name)]
        for name in [base] + others:
            result = result_of(name, scenario)
            row.append("-" if result is None else f"{ms(result['p50'])}/{ms(result['p99'])}")
        rows.append(row)
        if base not in names:
            continue
        for name, target, text in (("floor", MIN_FLOOR_RATIO, "of the floor"),
                                   ("weave-minimal", MIN_WEAVE_RATIO, "x weave-minimal")):
            if name not in names:
                continue
            theirs = rps(name, scenario)
            if not (ours and theirs):
                verdicts.append(f"MISS  {label}: no valid measurement against {name}")
                continue
            value = ours / theirs
            shown = f"{value:.2f} {text}" if name == "floor" else f"{value:.1f}{text}"
            wanted = f"{target:.2f}" if name == "floor" else f"{target:.0f}x"
            verdicts.append(f"{'PASS' if value >= target else 'MISS'}  {label}: {shown} "
                            f"(target >= {wanted})")
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
             "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
              for row in rows]
    print("\n" + "\n".join(lines))

    print("\nServer CPU efficiency: requests per CPU-second used by the server's processes "
          "(less sensitive to other load than req/s)")
    for scenario, label in scenarios:
        cells = {}
        for name in [base] + others:
            result = result_of(name, scenario)
            if result and not result["failed"] and result["server_cpu"]:
                cells[name] = result["rps"] / (result["server_cpu"] * (os.cpu_count() or 1))
        text = "  ".join(f"{SHORT[name]} {value:6.0f}" for name, value in cells.items())
        ratios = "".join(f"  vs {SHORT[name]} {ratio(cells.get(base), cells.get(name), name)}"
                         for name in others if base in cells and name in cells)
        print(f"  {label:<23} {text}{ratios}")

    loads = [(result["other_cpu"], name, scenario)
             for name, scenarios in all_results.items() for scenario, result in scenarios.items()]
    if loads:
        worst = max(loads)
        print(f"\nCPU used by other processes while measuring: at most {worst[0]:.0%} of the "
              f"machine ({worst[1]}, {worst[2]}); each figure is the best of its rounds.")
    if verdicts:
        print("\nTargets (SQLite):")
        for verdict in verdicts:
            print("  " + verdict)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=4,
                        help="seconds per measurement (4)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="measurements of each scenario on each server; the best is kept (3)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="seconds of warm-up before each measurement (1; 0 for none)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument("--only", default="syncserver,floor,weave-minimal",
                        help="comma-separated servers: syncserver, floor, weave-minimal, and "
                             "weave-minimal-own (its own werkzeug server; not in the default)")
    parser.add_argument("--skip-weave-minimal", action="store_true")
    parser.add_argument("--scenarios", default=",".join(name for name, _ in SCENARIOS),
                        help="comma-separated scenarios to measure (default: all of "
                             + ", ".join(name for name, _ in SCENARIOS) + ")")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--quiet-wait", type=float, default=3.0,
                        help="before each measurement, wait up to this many seconds for other "
                             "processes to leave the CPUs idle (5)")
    parser.add_argument("--worker-class", default="sync", choices=("sync", "gthread"),
                        help="gunicorn worker class, the same for every server (sync)")
    parser.add_argument("--threads", type=int, default=2,
                        help="gunicorn threads per worker with --worker-class gthread (2)")
    parser.add_argument("--wsgi", default="gunicorn,waitress",
                        help="comma-separated WSGI servers to measure under, one after the "
                             "other: gunicorn (the options above) and waitress (as `paster "
                             "serve development.ini` runs it; syncserver and the floor only)")
    parser.add_argument("--waitress-option", dest="waitress_options", action="append",
                        default=[], metavar="NAME=VALUE",
                        help="one more option of [server:main] under waitress, the same for "
                             "every server (cpu_affinity=0, threads=4...); may be repeated")
    parser.add_argument("--json", metavar="FILE", help="also write the raw results here")
    options = parser.parse_args(argv)
    names = [name.strip() for name in options.only.split(",") if name.strip()]
    unknown = [name for name in names if name not in SERVERS]
    if unknown:
        parser.error(f"unknown server(s): {', '.join(unknown)}; known: {', '.join(SERVERS)}")
    if options.skip_weave_minimal and "weave-minimal" in names:
        names.remove("weave-minimal")
    options.names = names
    options.wsgi = [name.strip() for name in options.wsgi.split(",") if name.strip()]
    if not options.wsgi or any(name not in WSGI_LABELS for name in options.wsgi):
        parser.error(f"--wsgi takes some of: {', '.join(WSGI_LABELS)}")
    if any("=" not in option for option in options.waitress_options):
        parser.error("--waitress-option takes NAME=VALUE")
    options.waitress_options = [" = ".join(part.strip() for part in option.split("=", 1))
                                for option in options.waitress_options]
    options.scenarios = [name.strip() for name in options.scenarios.split(",") if name.strip()]
    known = [name for name, _ in SCENARIOS]
    if not options.scenarios or any(name not in known for name in options.scenarios):
        parser.error(f"--scenarios takes some of: {', '.join(known)}")
    return options


#: How each WSGI server is described in the output.
WSGI_LABELS = {
    "gunicorn": lambda options: (
        f"gunicorn, {options.workers} {options.worker_class} workers"
        + (f" x {options.threads} threads" if options.worker_class == "gthread" else "")),
    "waitress": lambda options: ("waitress as `paster serve development.ini` runs it "
                                 "(egg:syncserver#waitress, its threads, one process)"
                                 + "".join(f", {option}" for option in options.waitress_options)),
}


def measure_under(wsgi, names, options, tmp, notes):
    """Start, seed and check ``names`` under one WSGI server, measure them, stop them."""
    servers = []
    try:
        for name in names:
            server = SERVERS[name](options, tmp, wsgi)
            key = f"{name} ({wsgi})"
            try:
                setup_server(server, tmp)
                servers.append(server)
                if server.note:
                    notes[key] = server.note
            except (RuntimeError, subprocess.SubprocessError, OSError) as error:
                print(f"  {name} NOT MEASURED: {error}", flush=True)
                notes[key] = f"not measured: {error}"
                if os.path.exists(server.log_path):
                    print("  server log:\n" + tail(server.log_path), flush=True)
                server.stop()
        compare_schemas(servers)
        busy = machine_busy_ticks()
        time.sleep(1)
        (busy1, total1), (busy0, total0) = machine_busy_ticks(), busy
        idle_load = (busy1 - busy0) / max(total1 - total0, 1)
        print(f"\nmachine load with every server idle: {idle_load:.0%} of "
              f"{os.cpu_count()} CPUs; load average "
              f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        if idle_load > 0.10:
            print("  warning: something else is using the CPU; figures will be low and noisy",
                  flush=True)
        return run_rounds(servers, options) if servers else {}
    finally:
        for server in servers:
            server.stop()


def main(argv=None):
    options = parse_args(argv)
    started = time.monotonic()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    print(f"syncserver benchmark: {os.cpu_count()} CPUs, gunicorn {options.workers} workers "
          f"({options.worker_class}"
          + (f", {options.threads} threads" if options.worker_class == "gthread" else "")
          + f"), wrk -t{options.wrk_threads} -c{options.connections}, best of {options.rounds} "
          f"x {options.duration}s per scenario, each after {options.warmup}s of warm-up, SQLite")
    print(f"user {USERNAME}, {SEED_RECORDS} records of {PAYLOAD_BYTES}-byte payloads in "
          f"'{COLLECTION}'")
    print(OLD_SERVER_NOTE)
    by_wsgi, notes = {}, {}
    tmp = tempfile.mkdtemp(prefix="syncserver-bench-")
    try:
        for wsgi in options.wsgi:
            names = [name for name in options.names if wsgi in SERVERS[name].wsgi_servers]
            skipped = [name for name in options.names if name not in names]
            print(f"\n=== under {WSGI_LABELS[wsgi](options)}", flush=True)
            if skipped:
                print(f"  ({', '.join(skipped)}: measured under gunicorn only)", flush=True)
            by_wsgi[wsgi] = (measure_under(wsgi, names, options, tmp, notes), names)
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    for wsgi, (results, names) in by_wsgi.items():
        print(f"\n=== results under {WSGI_LABELS[wsgi](options)}")
        print_table(results, [name for name in names if name in results])
    for name, note in notes.items():
        print(f"note ({name}): {note}")
    print(f"\nload average at the end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"(1 / 5 / 15 min, {os.cpu_count()} CPUs)")
    print(f"run time {time.monotonic() - started:.0f}s")
    if options.json:
        with open(options.json, "w") as handle:
            json.dump({"options": vars(options), "loadavg": os.getloadavg(),
                       "results": {wsgi: results for wsgi, (results, _) in by_wsgi.items()},
                       "notes": notes}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
