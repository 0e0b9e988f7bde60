"""Benchmark syncserver's Storage API 1.5 against a stdlib floor, every request Hawk-signed.

    .venv/bin/python bench/sync15_run.py [--duration 4] [--rounds 3] [--connections 16]
                                         [--scenarios info,get100,batch,put1] [--json FILE]

Two servers, started under gunicorn exactly as bench/run.py starts its
servers (its code is imported, not copied): syncserver (development.ini with
a fixed master secret and a fresh SQLite database) and the floor
(bench/floor15_app.py, standard library only, on tables created from
syncserver's own table definitions). A token is minted for each (node
``http://127.0.0.1:<port>``, the URL the client reaches); 1,000 bookmarks
are seeded and the answers checked through signed requests; then the
scenarios are measured on each server in turn, round after round, with wrk:

- ``info``   GET /1.5/<uid>/info/collections
- ``get100`` GET /1.5/<uid>/storage/bookmarks?full=1&limit=100&sort=newest (of 1,000)
- ``batch``  a batch upload of the 1,000 records: 10 POSTs of 100 (``batch=true``,
             then ``batch=<id>``, the last with ``commit=true``); req/s counts POSTs
- ``put1``   PUT /1.5/<uid>/storage/bookmarks/<id>, one record

Every request carries its own Hawk header (fresh ts and nonce, MAC over the
request): wrk signs it itself, in C, with OpenSSL's HMAC called from its
LuaJIT through the FFI, so the load generator costs the same few
microseconds per request as with a fixed header and the figures measure the
servers. A batch upload needs the batch id of its first answer, so for it
wrk runs one connection per thread (``-t`` = ``-c``): each thread's script
sees its own connection's answers in order. The other scenarios keep no
state and run with ``--wrk-threads`` (1), as bench/run.py does; so the
batch scenario is measured after the others, round after round.

It is a benchmark, not a test: it exits 0 even when a target is missed.
See bench/README.md and docs/performance.rst.
"""

import argparse
import functools
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run  # noqa: E402  (bench/run.py: servers, wrk, CPU accounting, the table)

SECRET = "bench-master-secret-0123456789abcdef"
UID = 1234
TOKEN_SECONDS = 4 * 3600
PREFIX = f"/1.5/{UID}"
COLLECTION_PATH = f"{PREFIX}/storage/{run.COLLECTION}"
BATCH_POSTS = 10

SCENARIOS = (
    ("info", "GET info/collections"),
    ("get100", "GET 100 full of 1,000"),
    ("batch", "batch upload, per POST"),
    ("put1", "PUT 1 BSO"),
)


# -- the servers --------------------------------------------------------------------------

class SyncServer15(run.SyncServer):
    """syncserver as bench/run.py runs it, with a fixed master secret for the 1.5 tokens."""

    prefix = PREFIX

    def prepare(self):
        super().prepare()
        with open(self.ini, "a") as handle:
            handle.write(f"global.master_secret = {SECRET}\n")

    def create_user(self, client):
        pass  # a 1.5 uid needs no account: its storage row comes with its first write


class Floor15(run.Server):
    name = "floor"
    prefix = PREFIX

    def prepare(self):
        import sqlalchemy

        from syncserver.storage import sql_schema

        self.db = os.path.join(self.workdir, "floor.db")
        engine = sqlalchemy.create_engine(f"sqlite:///{self.db}")
        try:
            sql_schema.metadata.create_all(engine)
            with engine.begin() as connection:
                connection.execute(sql_schema.collections_table.insert(), [
                    {"id": cid, "name": name}
                    for name, cid in sql_schema.FIXED_COLLECTIONS.items()])
        finally:
            engine.dispose()

    def gunicorn_command(self):
        return [sys.executable, "-m", "gunicorn", "--chdir", HERE, "floor15_app:application"]

    def environment(self):
        return {"FLOOR15_DB": self.db, "FLOOR15_SECRET": SECRET,
                "FLOOR15_HOSTS": f"127.0.0.1:{self.port}"}

    def create_user(self, client):
        pass


SERVERS = {"syncserver": SyncServer15, "floor": Floor15}


def node_of(server):
    return f"http://127.0.0.1:{server.port}"


class SignedHTTP:
    """A keep-alive client for setup and checks, signing each request as Firefox does."""

    def __init__(self, server, credentials):
        self.server = server
        self.credentials = credentials
        self.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)

    def request(self, method, path, body=None):
        from syncserver.testing.sync15_client import hawk_header

        headers = {"Authorization": hawk_header(method, node_of(self.server) + path,
                                                self.credentials),
                   "Content-Type": "application/json"}
        self.connection.request(method, path, body=body.encode() if body else None,
                                headers=headers)
        response = self.connection.getresponse()
        return response.status, response.read()

    def close(self):
        self.connection.close()


@functools.lru_cache(maxsize=1)
def _post_bodies():
    return run.post_bodies()


def batch_bodies(round_index):
    """The 10 POST bodies of one upload: blocks 0-9 of the 1,000 ids, new payloads."""
    bodies = _post_bodies()
    start = (round_index % (len(bodies) // BATCH_POSTS)) * BATCH_POSTS
    return bodies[start:start + BATCH_POSTS]


def upload(client, bodies):
    """One batch upload over ``client``; returns a list of problems."""
    status, body = client.request("POST", COLLECTION_PATH + "?batch=true", bodies[0])
    if status != 202:
        return [f"batch=true: {status} {body[:200]!r}"]
    batch = json.loads(body)["batch"]
    for index, data in enumerate(bodies[1:], start=1):
        query = f"batch={batch}" + ("&commit=true" if index == len(bodies) - 1 else "")
        status, body = client.request("POST", f"{COLLECTION_PATH}?{query}", data)
        if status not in (200, 202) or json.loads(body).get("failed"):
            return [f"POST {query}: {status} {body[:200]!r}"]
    return []


def setup(server, tmp):
    """Start, seed 1,000 records with one batch upload, check the four requests."""
    from syncserver.testing.sync15_client import mint_token

    print(f"\n== {server.name}", flush=True)
    server.prepare()
    server.start()
    server.credentials = mint_token(UID, node_of(server), SECRET, duration=TOKEN_SECONDS)
    client = SignedHTTP(server, server.credentials)
    problems = []
    try:
        started = time.monotonic()
        seed = [json.dumps(batch) for batch in run.seed_batches()]
        problems += upload(client, seed)
        if problems:
            raise RuntimeError("seeding failed: " + "; ".join(problems))
        print(f"  started on 127.0.0.1:{server.port}; seeded {run.SEED_RECORDS} records with "
              f"one batch upload in {time.monotonic() - started:.1f}s", flush=True)
        status, body = client.request("GET", PREFIX + "/info/collections")
        if status != 200 or run.COLLECTION not in json.loads(body or b"{}"):
            problems.append(f"info/collections: {status} {body[:100]!r}")
        status, body = client.request("GET", f"{COLLECTION_PATH}?{run.GET_QUERY}")
        records = json.loads(body) if status == 200 else []
        if status != 200 or len(records) != 100 or not all(
                len(r.get("payload", "")) >= run.PAYLOAD_BYTES - 20 for r in records):
            problems.append(f"GET full: {status}, {len(records)} records")
        bodies = batch_bodies(1)
        problems += upload(client, bodies)
        status, body = client.request("GET", f"{COLLECTION_PATH}?{run.GET_QUERY}")
        newest = {r["id"]: r["payload"] for r in json.loads(body)} if status == 200 else {}
        if newest != {wbo["id"]: wbo["payload"] for wbo in json.loads(bodies[-1])}:
            problems.append("after a batch upload, the 100 newest records are not its last 100")
        path, put_body = run.put_requests(PREFIX)[0]
        status, body = client.request("PUT", path, put_body)
        try:
            float(body)
        except ValueError:
            status = f"{status} (body {body[:80]!r})"
        if status != 200:
            problems.append(f"PUT: {status}")
    finally:
        client.close()
    problems += check_replay_refused(server)
    server.scripts = write_scripts(os.path.join(tmp, server.name + "-lua"), server)
    for problem in problems:
        print(f"  CHECK FAILED: {problem}", flush=True)
    if not problems:
        print("  checked: the four requests answer as the protocol says; the batch upload and "
              "the PUT write; a replayed request is refused", flush=True)
    server.note = "; ".join(problems)


def check_replay_refused(server):
    """Both servers really check nonces: a signed request sent again is a 401.

    Each gunicorn worker remembers the nonces it saw (syncserver's in-process
    nonce cache; Redis shares them), and sync workers close every connection,
    so the copies may land on another worker: of three sends with two
    workers, at least two meet the same worker and one of them must fail.
    """
    from syncserver.testing.sync15_client import hawk_header

    path = PREFIX + "/info/collections"
    header = hawk_header("GET", node_of(server) + path, server.credentials)
    statuses = []
    for _ in range(server.options.workers + 1):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.request("GET", path, headers={"Authorization": header})
        statuses.append(connection.getresponse().status)
        connection.close()
    if statuses[0] == 200 and 401 in statuses and set(statuses) <= {200, 401}:
        return []
    return [f"a replayed request gave {statuses}"]


# -- wrk scripts that sign each request --------------------------------------------------

LUA_SIGNER = r"""
local ffi = require("ffi")
ffi.cdef[[
const void *EVP_sha256(void);
unsigned char *HMAC(const void *md, const void *key, int key_len, const unsigned char *d,
                    size_t n, unsigned char *out, unsigned int *out_len);
int EVP_EncodeBlock(unsigned char *t, const unsigned char *f, int n);
int RAND_bytes(unsigned char *buf, int num);
]]
local ok, crypto = pcall(ffi.load, "crypto")
if not ok then crypto = ffi.load("libcrypto.so.3") end
local SHA256 = crypto.EVP_sha256()
local digest = ffi.new("unsigned char[32]")
local digest_len = ffi.new("unsigned int[1]")
local encoded = ffi.new("unsigned char[64]")
local random = ffi.new("unsigned char[8]")

local TOKEN_ID = "%(token_id)s"
local KEY = "%(key)s"
local HOST = "127.0.0.1"
local PORT = "%(port)s"
local HOST_HEADER = HOST .. ":" .. PORT

-- The Authorization header of one request: fresh ts and nonce, as Firefox signs.
local function hawk(method, target)
  local ts = tostring(os.time())
  assert(crypto.RAND_bytes(random, 8) == 1)
  local nonce = ffi.string(encoded, crypto.EVP_EncodeBlock(encoded, random, 8))
  local text = "hawk.1.header\n" .. ts .. "\n" .. nonce .. "\n" .. method .. "\n" .. target ..
               "\n" .. HOST .. "\n" .. PORT .. "\n\n\n"
  crypto.HMAC(SHA256, KEY, #KEY, text, #text, digest, digest_len)
  local mac = ffi.string(encoded, crypto.EVP_EncodeBlock(encoded, digest, 32))
  return 'Hawk id="' .. TOKEN_ID .. '", ts="' .. ts .. '", nonce="' .. nonce ..
         '", mac="' .. mac .. '"'
end

local function signed(method, target, body)
  local headers = {["Host"] = HOST_HEADER, ["Authorization"] = hawk(method, target)}
  if body then headers["Content-Type"] = "application/json" end
  return wrk.format(method, target, headers, body)
end

local function lines(path)
  local found = {}
  local file = assert(io.open(path, "rb"))
  for line in file:lines() do found[#found + 1] = line end
  file:close()
  return found
end
"""

LUA_GET = r"""
function request()
  return signed("GET", "%(target)s")
end
"""

LUA_PUT = r"""
local puts = {}
local index = 0

function init(args)
  for _, line in ipairs(lines("%(data)s")) do
    local tab = string.find(line, "\t", 1, true)
    puts[#puts + 1] = {string.sub(line, 1, tab - 1), string.sub(line, tab + 1)}
  end
  index = math.random(#puts) - 1
end

function request()
  index = index %% #puts + 1
  return signed("PUT", puts[index][1], puts[index][2])
end
"""

# One connection per thread: request() and response() alternate, so the
# state of the upload in progress is this connection's.
LUA_BATCH = r"""
local bodies = {}
local uploads = 0
local step = 0
local batch = nil
local POSTS = %(posts)d

function init(args)
  bodies = lines("%(data)s")
  uploads = math.random(#bodies / POSTS) - 1
end

function request()
  local first = (uploads %% (#bodies / POSTS)) * POSTS
  local body = bodies[first + step + 1]
  local target = "%(path)s?batch=true"
  if step > 0 then
    target = "%(path)s?batch=" .. batch
    if step == POSTS - 1 then target = target .. "&commit=true" end
  end
  return signed("POST", target, body)
end

function response(status, headers, body)
  if status == 202 and step == 0 then
    batch = string.match(body, '"batch": *"(%%x+)"')
  end
  if (status ~= 202 and status ~= 200) or (step == 0 and batch == nil) then
    step = 0  -- start a new upload
    return
  end
  step = step + 1
  if step == POSTS then
    step = 0
    uploads = uploads + 1
  end
end
"""


def write_scripts(folder, server):
    """{scenario: (script, url path)} for wrk, signing with this server's token."""
    os.makedirs(folder, exist_ok=True)
    credentials = server.credentials
    common = run.LUA_COMMON % {"auth": "set per request"} + LUA_SIGNER % {
        "token_id": credentials.id, "key": credentials.key, "port": server.port}
    scripts = {}

    def write(name, text, url_path):
        path = os.path.join(folder, f"{name}.lua")
        with open(path, "w") as handle:
            handle.write(common + text)
        scripts[name] = (path, url_path)

    info = PREFIX + "/info/collections"
    write("info", LUA_GET % {"target": info}, info)
    get = f"{COLLECTION_PATH}?{run.GET_QUERY}"
    write("get100", LUA_GET % {"target": get}, get)
    data = os.path.join(folder, "put.data")
    puts = run.put_requests(PREFIX)
    with open(data, "w") as handle:
        handle.writelines(f"{path}\t{body}\n" for path, body in puts)
    write("put1", LUA_PUT % {"data": data}, puts[0][0])
    data = os.path.join(folder, "batch.data")
    with open(data, "w") as handle:
        handle.writelines(body + "\n" for body in run.post_bodies())
    write("batch", LUA_BATCH % {"data": data, "posts": BATCH_POSTS, "path": COLLECTION_PATH},
          COLLECTION_PATH)
    return scripts


# -- the run -------------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=4, help="seconds per measurement (4)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the best is kept (3)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up (1)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--wrk-threads", type=int, default=1,
                        help="wrk threads, except for the batch upload, which runs one thread "
                             "per connection (1)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--worker-class", default="sync", choices=("sync", "gthread"))
    parser.add_argument("--threads", type=int, default=2, help="threads with gthread (2)")
    parser.add_argument("--quiet-wait", type=float, default=3.0,
                        help="wait up to this long for idle CPUs before each measurement (3)")
    parser.add_argument("--only", default="syncserver,floor",
                        help="servers to measure: syncserver, floor (both)")
    parser.add_argument("--scenarios", default=",".join(name for name, _ in SCENARIOS),
                        help="comma-separated, some of " + ", ".join(n for n, _ in SCENARIOS))
    parser.add_argument("--json", metavar="FILE", help="also write the raw results here")
    options = parser.parse_args(argv)
    options.names = [name.strip() for name in options.only.split(",") if name.strip()]
    if not options.names or any(name not in SERVERS for name in options.names):
        parser.error(f"--only takes some of: {', '.join(SERVERS)}")
    options.scenarios = [name.strip() for name in options.scenarios.split(",") if name.strip()]
    known = [name for name, _ in SCENARIOS]
    if not options.scenarios or any(name not in known for name in options.scenarios):
        parser.error(f"--scenarios takes some of: {', '.join(known)}")
    return options


def measure_all(servers, options):
    """run.run_rounds over the stateless scenarios, then over the batch upload.

    The batch upload needs one connection per wrk thread; the others run with
    ``--wrk-threads``, which costs the load generator (on the same CPUs) less.
    """
    results = {server.name: {} for server in servers}
    groups = ([name for name in options.scenarios if name != "batch"], options.wrk_threads), \
        ([name for name in options.scenarios if name == "batch"], options.connections)
    for scenarios, threads in groups:
        if scenarios:
            group = argparse.Namespace(**dict(vars(options), scenarios=scenarios,
                                              wrk_threads=threads))
            for name, found in run.run_rounds(servers, group).items():
                results[name].update(found)
    return results


def load_average():
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


def main(argv=None):
    options = parse_args(argv)
    started = time.monotonic()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    signal.signal(signal.SIGINT, run._on_signal)
    signal.signal(signal.SIGTERM, run._on_signal)
    run.SCENARIOS = SCENARIOS  # run.run_rounds and run.print_table walk these
    print(f"Sync 1.5 benchmark: {os.cpu_count()} CPUs, gunicorn {options.workers} workers "
          f"({options.worker_class}), wrk -t{options.wrk_threads} -c{options.connections} "
          f"(batch: -t{options.connections}) signing every request, best of "
          f"{options.rounds} x {options.duration}s per scenario, SQLite; load average "
          f"{load_average()}")
    tmp = tempfile.mkdtemp(prefix="syncserver-bench15-")
    servers, results, notes = [], {}, {}
    try:
        for name in options.names:
            server = SERVERS[name](options, tmp)
            servers.append(server)
            setup(server, tmp)
            if server.note:
                notes[name] = server.note
        results = measure_all(servers, options)
    finally:
        for server in servers:
            server.stop()
        run.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    run.MIN_FLOOR_RATIO = 0.5  # this benchmark's target (bench/run.py's is 0.6)
    run.print_table(results, [name for name in options.names if name in results])
    batch = {name: result.get("batch") for name, result in results.items()}
    if any(batch.values()):
        print("\nbatch uploads of 1,000 records per second (10 POSTs each): " + ", ".join(
            f"{name} {result['rps'] / BATCH_POSTS:.1f}" for name, result in batch.items()
            if result))
    for name, note in notes.items():
        print(f"note ({name}): {note}")
    print(f"\nload average at the end: {load_average()}; run time "
          f"{time.monotonic() - started:.0f}s")
    if options.json:
        with open(options.json, "w") as handle:
            json.dump({"options": vars(options), "results": results, "notes": notes,
                       "load_average": load_average()}, handle, indent=2)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.SubprocessError as error:
        run.stop_all()
        sys.exit(f"failed: {error}")
