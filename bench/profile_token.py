"""Where syncserver's time goes on a token request (GET /1.0/sync/1.5), in-process, profiled.

    .venv/bin/python bench/profile_token.py [--requests 1000] [--top 15] [--dump FILE]

The tokenserver counterpart of bench/profile_app.py (whose folding into
areas it uses): no HTTP server, no load generator; each request a WSGI call
on a prepared environ, for accounts that already have a token (the common
case), against fresh SQLite databases, with the local fake accounts server
(tests/fxa_server.py) signing the JWTs and serving the JWKS (fetched once).
It prints the CPU time per request of syncserver and of the floor
(bench/floortok_app.py), unprofiled, then syncserver's profile folded into
areas and its heaviest functions.
"""

import argparse
import cProfile
import io
import os
import pstats
import shutil
import sqlite3
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import floortok_app  # noqa: E402
import profile_app  # noqa: E402
import token_run  # noqa: E402  (puts the checkout on sys.path for tests.fxa_server)

HOST = "127.0.0.1:8000"
ACCOUNTS = 50

AREAS_TOKEN = (
    ("JWT verification (PyJWT, cryptography, syncserver.tokenserver.oauth, jwks)",
     ("/jwt/", "/cryptography/", "/syncserver/tokenserver/oauth.py",
      "/syncserver/tokenserver/jwks.py")),
    ("token users store (syncserver.tokenserver.users_sql, users, policy)",
     ("/syncserver/tokenserver/users", "/syncserver/tokenserver/policy.py",
      "/syncserver/db/")),
    ("token minting (syncserver.protocol.tokens, tokenlib, keyid, hmac)",
     ("/syncserver/protocol/tokens.py", "/tokenlib/", "/syncserver/tokenserver/keyid.py",
      "/hmac.py", "_hashlib", "base64")),
) + profile_app.AREAS


def environ(access_token, key_id):
    env = profile_app.environ("GET", token_run.TOKEN_PATH)
    env["HTTP_HOST"] = HOST
    env["HTTP_AUTHORIZATION"] = f"Bearer {access_token}"
    env["HTTP_X_KEYID"] = key_id
    return env


def call(app, env):
    status = []
    chunks = app(env, lambda line, headers, exc_info=None: status.append(line))
    data = b"".join(chunks)
    if hasattr(chunks, "close"):
        chunks.close()
    if not status[0].startswith("200"):
        raise RuntimeError(f"{status[0]} {data[:200]!r}")
    return data


def main(argv=None):
    from syncserver.app import build_app
    from tests.fxa_server import FakeAccountsServer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--dump", help="write the .prof file here")
    options = parser.parse_args(argv)
    profile_app.AREAS = AREAS_TOKEN
    fxa = FakeAccountsServer().start()
    workdir = tempfile.mkdtemp(prefix="syncserver-profile-token-")
    try:
        db = os.path.join(workdir, "syncserver.db")
        ours = build_app({"storage.sqluri": f"sqlite:///{db}", "storage.create_tables": "true",
                          "tokenserver.enabled": "true", "global.master_secret": token_run.SECRET,
                          "tokenserver.oauth_server_url": fxa.url})
        floor_db = os.path.join(workdir, "floor.db")
        source, target = sqlite3.connect(db), sqlite3.connect(floor_db)
        for (statement,) in source.execute(
                "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL "
                "AND name NOT LIKE 'sqlite_%' ORDER BY rowid"):
            target.execute(statement)
        target.commit()
        source.close()
        target.close()
        floor = floortok_app.FloorTokenApp(floor_db, token_run.SECRET, fxa.url + "/jwks")
        accounts = [(fxa.mint({"sub": token_run.fxa_uid(n), "fxa-generation":
                               token_run.GENERATION}), token_run.key_id(n))
                    for n in range(ACCOUNTS)]
        apps = {"syncserver": ours, "floor": floor}
        cpu = {}
        for name, app in apps.items():
            for pair in accounts:  # their first tokens: the accounts exist from now on
                call(app, environ(*pair))
            started = time.process_time()
            for i in range(options.requests):
                call(app, environ(*accounts[i % ACCOUNTS]))
            cpu[name] = (time.process_time() - started) / options.requests
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        for i in range(options.requests):
            call(ours, environ(*accounts[i % ACCOUNTS]))
        profiler.disable()
        stats = pstats.Stats(profiler, stream=io.StringIO())
        if options.dump:
            stats.dump_stats(options.dump)
        total = sum(value[2] for value in stats.stats.values())
        print(f"in-process, CPU time per token request of a known account "
              f"({options.requests} requests, {sys.version.split()[0]})\n")
        print(f"  syncserver {cpu['syncserver'] * 1e3:7.3f} ms   floor {cpu['floor'] * 1e3:7.3f} "
              f"ms   floor/syncserver {cpu['floor'] / cpu['syncserver']:.2f}")
        print("  syncserver's time by area (exclusive, under cProfile):")
        for area, seconds in sorted(profile_app.fold(stats).items(), key=lambda i: -i[1]):
            if seconds / total >= 0.005:
                print(f"    {seconds / total:6.1%}  {area}")
        print("  heaviest functions (inclusive):")
        for share, ncalls, label in profile_app.top_inclusive(stats, options.top, total):
            print(f"    {share:6.1%}  {ncalls / options.requests:6.1f}/req  {label}")
        ours.close()
    finally:
        fxa.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
