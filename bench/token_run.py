"""Benchmark syncserver's tokenserver (``GET /1.0/sync/1.5``) against a floor, in the same run.

    .venv/bin/python bench/token_run.py [--duration 4] [--rounds 3] [--connections 16]
                                        [--users 200] [--new-every 20] [--json FILE]

A local fake Mozilla-accounts server (tests/fxa_server.py: an RSA key, its
JWKS over HTTP) signs the access tokens. Two servers are started under
gunicorn exactly as bench/run.py starts its servers (its code is imported,
not copied): syncserver (development.ini with its tokenserver asking the fake
accounts server, a fixed master secret, a fresh SQLite database) and the
floor (bench/floortok_app.py: the same verification with ``cryptography``,
the same SQL, on tables made with syncserver's own DDL). Both fetch the JWKS
once per worker and verify every JWT locally (RS256).

``--users`` accounts get their first token before measuring (they exist:
the common case, a device asking for a fresh token every hour); then wrk
sends their access tokens and X-KeyIDs in turn, and every ``--new-every``-th
request is an account never seen before (a first sign-in: one write
transaction), as long as the pre-minted new accounts last. The answers are
checked: a token that syncserver's storage code verifies, the same uid again
for the same account, 401 for a tampered JWT.

It is a benchmark, not a test: it exits 0 even when the target is missed.
See bench/README.md and docs/performance.rst.
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(1, ROOT)  # tests.fxa_server: the fake accounts server of the tests

import run  # noqa: E402  (bench/run.py: servers, wrk, CPU accounting, the table)

SECRET = "bench-token-master-secret-0123456789abcdef"
TOKEN_PATH = "/1.0/sync/1.5"
GENERATION = 1_700_000_000_000
KEYS_CHANGED_AT = 1_700_000_000_000
NEW_ACCOUNTS = 4000

SCENARIOS = (("token", "GET /1.0/sync/1.5"),)


def fxa_uid(label):
    return hashlib.sha256(f"bench-account-{label}".encode()).hexdigest()[:32]


def key_id(label):
    state = hashlib.sha256(f"bench-kB-{label}".encode()).digest()[:16]
    return f"{KEYS_CHANGED_AT}-" + base64.urlsafe_b64encode(state).decode().rstrip("=")


class TokenSyncServer(run.SyncServer):
    """syncserver as bench/run.py runs it; its tokenserver asks the fake accounts server."""

    fxa_url = None

    def prepare(self):
        super().prepare()
        with open(self.ini, "a") as handle:
            handle.write(f"global.master_secret = {SECRET}\n"
                         f"tokenserver.oauth_server_url = {self.fxa_url}\n")

    def create_user(self, client):
        pass


class TokenFloor(run.Server):
    name = "floor"
    fxa_url = None
    schema_from = None  # syncserver's database: its DDL makes the floor's tables

    def prepare(self):
        self.db = os.path.join(self.workdir, "floor.db")
        source = sqlite3.connect(self.schema_from)
        try:
            ddl = [row[0] for row in source.execute(
                "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL "
                "AND name NOT LIKE 'sqlite_%' ORDER BY rowid")]
        finally:
            source.close()
        target = sqlite3.connect(self.db)
        try:
            for statement in ddl:
                target.execute(statement)
            target.commit()
        finally:
            target.close()

    def gunicorn_command(self):
        return [sys.executable, "-m", "gunicorn", "--chdir", HERE, "floortok_app:application"]

    def environment(self):
        return {"FLOORTOK_DB": self.db, "FLOORTOK_SECRET": SECRET,
                "FLOORTOK_JWKS_URL": self.fxa_url.rstrip("/") + "/jwks"}

    def create_user(self, client):
        pass


SERVERS = {"syncserver": TokenSyncServer, "floor": TokenFloor}


def ask(port, access_token, key_id_value):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", TOKEN_PATH, headers={
            "Authorization": f"Bearer {access_token}", "X-KeyID": key_id_value})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def check_token(server, body):
    """The answer is a token syncserver's storage nodes accept for this server's node."""
    from syncserver.protocol.tokens import InvalidToken, parse_token

    answer = json.loads(body)
    node = f"http://127.0.0.1:{server.port}"
    try:
        token = parse_token(answer["id"], [SECRET])
    except (InvalidToken, KeyError) as error:
        return f"the token does not verify: {error}"
    if (token.node != node or token.uid != answer["uid"] or token.derived_key != answer["key"]
            or answer["api_endpoint"] != f"{node}/1.5/{answer['uid']}"):
        return f"the token's fields disagree: {answer}"
    return None


def setup(server, tmp, fxa, accounts, options):
    """Start, give every existing account its first token, check the answers."""
    print(f"\n== {server.name}", flush=True)
    server.prepare()
    server.start()
    started = time.monotonic()
    problems, uids = [], {}
    for label, (access_token, kid) in accounts.items():
        status, body = ask(server.port, access_token, kid)
        if status != 200:
            raise RuntimeError(f"the first token of account {label} gave {status}: "
                               f"{body[:300]!r}")
        uids[label] = json.loads(body)["uid"]
        if len(uids) == 1:
            problem = check_token(server, body)
            if problem:
                problems.append(problem)
    print(f"  started on 127.0.0.1:{server.port}; {len(accounts)} accounts got their first "
          f"token in {time.monotonic() - started:.1f}s", flush=True)
    label, (access_token, kid) = next(iter(accounts.items()))
    status, body = ask(server.port, access_token, kid)
    if status != 200 or json.loads(body)["uid"] != uids[label]:
        problems.append(f"a second token for the same account: {status} {body[:200]!r}")
    tampered = access_token[:-4] + ("AAAA" if not access_token.endswith("AAAA") else "BBBB")
    status, body = ask(server.port, tampered, kid)
    if status != 401:
        problems.append(f"a tampered JWT gave {status}, not 401")
    if len(set(uids.values())) != len(uids):
        problems.append("two accounts got the same uid")
    for problem in problems:
        print(f"  CHECK FAILED: {problem}", flush=True)
    if not problems:
        print("  checked: tokens verify as the storage nodes verify them, an account keeps its "
              "uid, a tampered JWT is a 401", flush=True)
    server.note = "; ".join(problems)
    server.scripts = write_scripts(os.path.join(tmp, server.name + "-lua"), accounts,
                                   fresh_accounts(fxa, options), options)


def fresh_accounts(fxa, options):
    """Access tokens of accounts no server has seen (the same for each: separate databases)."""
    global _FRESH
    if _FRESH is None:
        _FRESH = [(fxa.mint({"sub": fxa_uid(f"new-{n}"), "fxa-generation": GENERATION}),
                   key_id(f"new-{n}")) for n in range(options.new_accounts)]
    return _FRESH


_FRESH = None

LUA_TOKENS = r"""
local existing = {}
local fresh = {}
local fresh_used = 0
local count = 0
local index = 0
local NEW_EVERY = %(new_every)d
local STATE = "%(state)s"

local function read(path, into)
  local file = assert(io.open(path, "rb"))
  for line in file:lines() do
    local tab = string.find(line, "\t", 1, true)
    into[#into + 1] = {string.sub(line, 1, tab - 1), string.sub(line, tab + 1)}
  end
  file:close()
end

function init(args)
  read("%(existing)s", existing)
  read("%(fresh)s", fresh)
  local file = io.open(STATE, "rb")
  if file then fresh_used = tonumber(file:read("*l")) or 0; file:close() end
  index = math.random(#existing) - 1
end

local function format(pair)
  local headers = {}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  headers["Authorization"] = "Bearer " .. pair[1]
  headers["X-KeyID"] = pair[2]
  return wrk.format("GET", "%(path)s", headers)
end

-- Every NEW_EVERY-th request is an account never seen (a first sign-in), while they last;
-- how many were used is kept in STATE, so the next run of wrk takes the next ones.
function request()
  count = count + 1
  if count %% NEW_EVERY == 0 and fresh_used < #fresh then
    fresh_used = fresh_used + 1
    local file = io.open(STATE, "wb")
    file:write(tostring(fresh_used), "\n")
    file:close()
    return format(fresh[fresh_used])
  end
  index = index %% #existing + 1
  return format(existing[index])
end
"""


def write_scripts(folder, accounts, fresh, options):
    os.makedirs(folder, exist_ok=True)
    existing_path = os.path.join(folder, "existing.data")
    with open(existing_path, "w") as handle:
        handle.writelines(f"{token}\t{kid}\n" for token, kid in accounts.values())
    fresh_path = os.path.join(folder, "fresh.data")
    with open(fresh_path, "w") as handle:
        handle.writelines(f"{token}\t{kid}\n" for token, kid in fresh)
    script = os.path.join(folder, "token.lua")
    with open(script, "w") as handle:
        handle.write(run.LUA_COMMON % {"auth": "set per request"} + LUA_TOKENS % {
            "new_every": options.new_every, "existing": existing_path, "fresh": fresh_path,
            "state": os.path.join(folder, "fresh.used"), "path": TOKEN_PATH})
    return {"token": (script, TOKEN_PATH)}


def count_accounts(server):
    path = server.db
    connection = sqlite3.connect(path)
    try:
        return connection.execute("SELECT count(*) FROM token_users").fetchone()[0]
    finally:
        connection.close()


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
    parser.add_argument("--users", type=int, default=200,
                        help="existing accounts, given their first token before measuring (200)")
    parser.add_argument("--new-every", type=int, default=20,
                        help="every N-th request is a new account (20: 5%%)")
    parser.add_argument("--new-accounts", type=int, default=NEW_ACCOUNTS,
                        help=f"new accounts minted for the whole run ({NEW_ACCOUNTS})")
    parser.add_argument("--only", default="syncserver,floor")
    parser.add_argument("--json", metavar="FILE", help="also write the raw results here")
    options = parser.parse_args(argv)
    options.names = [name.strip() for name in options.only.split(",") if name.strip()]
    if not options.names or any(name not in SERVERS for name in options.names):
        parser.error(f"--only takes some of: {', '.join(SERVERS)}")
    options.scenarios = ["token"]
    return options


def load_average():
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


def main(argv=None):
    from tests.fxa_server import FakeAccountsServer

    options = parse_args(argv)
    started = time.monotonic()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    signal.signal(signal.SIGINT, run._on_signal)
    signal.signal(signal.SIGTERM, run._on_signal)
    run.SCENARIOS = SCENARIOS
    print(f"tokenserver benchmark: {os.cpu_count()} CPUs, gunicorn {options.workers} workers "
          f"({options.worker_class}), wrk -t{options.wrk_threads} -c{options.connections}, "
          f"best of {options.rounds} x {options.duration}s, SQLite, {options.users} existing "
          f"accounts, 1 request in {options.new_every} a new account; load average "
          f"{load_average()}")
    fxa = FakeAccountsServer()
    fxa.start()
    tmp = tempfile.mkdtemp(prefix="syncserver-bench-token-")
    servers, results, notes, created = [], {}, {}, {}
    try:
        accounts = {n: (fxa.mint({"sub": fxa_uid(n), "fxa-generation": GENERATION}), key_id(n))
                    for n in range(options.users)}
        TokenSyncServer.fxa_url = TokenFloor.fxa_url = fxa.url
        for name in options.names:
            server = SERVERS[name](options, tmp)
            if name == "floor":
                syncserver = next((s for s in servers if s.name == "syncserver"), None)
                if syncserver is None:
                    sys.exit("the floor's tables are made from syncserver's: run both")
                TokenFloor.schema_from = syncserver.db
            servers.append(server)
            setup(server, tmp, fxa, accounts, options)
            if server.note:
                notes[name] = server.note
        jwks_before = fxa.jwks_fetches
        results = run.run_rounds(servers, options)
        for server in servers:
            created[server.name] = count_accounts(server) - options.users
    finally:
        for server in servers:
            server.stop()
        run.stop_all()
        fxa.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    run.MIN_FLOOR_RATIO = 0.5  # this benchmark's target (bench/run.py's is 0.6)
    run.print_table(results, [name for name in options.names if name in results])
    print("\nnew accounts created while measuring (first sign-ins): " + ", ".join(
        f"{name} {count}" for name, count in created.items())
        + f"; JWKS fetches while measuring: {fxa.jwks_fetches - jwks_before}")
    for name, note in notes.items():
        print(f"note ({name}): {note}")
    print(f"\nload average at the end: {load_average()}; run time "
          f"{time.monotonic() - started:.0f}s")
    if options.json:
        with open(options.json, "w") as handle:
            json.dump({"options": vars(options), "results": results, "notes": notes,
                       "new_accounts": created, "load_average": load_average()},
                      handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
