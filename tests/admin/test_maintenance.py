"""``purge-expired``, ``stats``, ``check`` and ``db`` on real databases, and the error paths."""

import json
import os
import subprocess
import sys
import threading

import sqlalchemy

from syncserver import migrations
from syncserver.db import Database
from syncserver.protocol.timestamps import now_centiseconds
from syncserver.storage import ItemQuery, ItemWrite
from tests.admin.conftest import run_admin, write_ini
from tests.backends import sql_storage
from tests.services import free_port

PASSWORD = "correct horse battery"


def fill(storage, user_id, collection, live, expired):
    """``live`` items that never expire and ``expired`` ones whose TTL is already over."""
    items = [ItemWrite(f"live{n}", payload=f"p{n}") for n in range(live)]
    items += [ItemWrite(f"gone{n}", payload="old", ttl=0) for n in range(expired)]
    for start in range(0, len(items), 100):
        storage.set_items(user_id, collection, items[start:start + 100], now_centiseconds())


def test_purge_in_batches_while_a_reader_works(admin_ini, backends):
    storage, _auth = backends
    for user_id in (1, 2, 3):
        fill(storage, user_id, "history", live=20, expired=150)
    assert storage.count_expired(int(now_centiseconds() / 100) + 1) == 450

    stop = threading.Event()
    failures, reads = [], []

    def reader():
        while not stop.is_set():
            try:
                records = storage.get_items(2, "history", ItemQuery(), True)
                reads.append(len(records))
                if len(records) != 20:
                    failures.append(f"saw {len(records)} live items")
            except Exception as error:
                failures.append(repr(error))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        result = run_admin(admin_ini, "purge-expired", "--batch-size", "40", "--json")
    finally:
        stop.set()
        thread.join(timeout=30)
    assert result.code == 0, result
    summary = json.loads(result.out)
    assert summary["purged"] == 450 and summary["expired"] == 450
    assert summary["batches"] >= 450 // 40
    assert failures == [] and reads
    assert storage.count_expired(int(now_centiseconds() / 100) + 1) == 0
    for user_id in (1, 2, 3):
        assert storage.get_collection_counts(user_id) == {"history": 20}

    again = run_admin(admin_ini, "purge-expired")
    assert again.code == 0 and "Purged 0 expired items in 0 batches" in again.out


def test_purge_lowers_its_cpu_priority(tmp_path):
    """By default the purge runs at niceness 10 at least, so the server's requests go first."""
    ini = write_ini(tmp_path / "admin.ini", f"sqlite:///{tmp_path / 'nice.db'}")
    assert run_admin(ini, "db", "upgrade").code == 0
    script = ("import os, sys\n"
              "from syncserver.admin.cli import main\n"
              "code = main(sys.argv[1:])\n"
              "print('niceness', os.nice(0))\n"
              "sys.exit(code)\n")

    def niceness_after(*options):
        done = subprocess.run([sys.executable, "-c", script, "-c", str(ini), "purge-expired",
                               *options], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return int(done.stdout.rsplit("niceness", 1)[1])

    started_at = os.nice(0)
    assert niceness_after() == max(started_at, 10)
    assert niceness_after("--nice", "15") == max(started_at, 15)
    assert niceness_after("--nice", "0") == started_at
    bad = run_admin(ini, "purge-expired", "--nice", "20")
    assert bad.code == 2 and "from 0 to 19" in bad.err


def test_purge_counts_in_words(admin_ini, backends):
    storage, _auth = backends
    fill(storage, 1, "tabs", live=1, expired=1)
    assert "1 expired item would be purged" in run_admin(
        admin_ini, "purge-expired", "--dry-run").out
    result = run_admin(admin_ini, "purge-expired")
    assert result.code == 0 and "Purged 1 expired item in 1 batch of up to" in result.out


def test_purge_dry_run_counts_only(admin_ini, backends):
    storage, _auth = backends
    fill(storage, 1, "tabs", live=1, expired=5)
    result = run_admin(admin_ini, "purge-expired", "--dry-run")
    assert result.code == 0 and "5 expired items would be purged" in result.out
    assert storage.count_expired(int(now_centiseconds() / 100) + 1) == 5
    bad = run_admin(admin_ini, "purge-expired", "--batch-size", "0")
    assert bad.code == 2 and "at least 1" in bad.err


def test_stats(admin_ini, backends):
    storage, auth = backends
    for name in ("alice", "bob", "carol"):
        auth.create_user(name, PASSWORD, None)
    fill(storage, 1, "bookmarks", live=3, expired=2)
    fill(storage, 2, "bookmarks", live=1, expired=0)
    fill(storage, 2, "tabs", live=2, expired=0)
    stats = json.loads(run_admin(admin_ini, "stats", "--json").out)
    assert stats["accounts"] == 3 and stats["users_with_data"] == 2
    assert stats["items"] == 6 and stats["expired_items"] == 2
    assert stats["bytes"] == 2 * 6
    assert stats["collections"] == {"bookmarks": {"users": 2, "items": 4, "bytes": 8},
                                    "tabs": {"users": 1, "items": 2, "bytes": 4}}
    text = run_admin(admin_ini, "stats")
    assert text.code == 0
    assert "accounts         3" in text.out
    assert any(line.split() == ["bookmarks", "2", "4", "8"] for line in text.out.splitlines())


def test_check_all_good(admin_ini):
    result = run_admin(admin_ini, "check")
    assert result.code == 0, result
    names = [line.split()[:2] for line in result.out.splitlines()]
    assert names == [["ok", "configuration"], ["ok", "storage"], ["ok", "auth"],
                     ["ok", "schema"], ["ok", "throttle"]]
    assert json.loads(run_admin(admin_ini, "check", "--json").out)[3]["ok"] is True


def test_check_reports_an_old_schema_and_db_upgrade_fixes_it(tmp_path, sqlite_url):
    database = Database(sqlite_url, pool_size=1)
    migrations.upgrade(database.engine, "0001")
    database.close()
    ini = write_ini(tmp_path / "old.ini", sqlite_url)
    result = run_admin(ini, "check")
    assert result.code == 1
    lines = {line.split()[1]: line for line in result.out.splitlines()}
    assert lines["configuration"].startswith("ok")
    assert lines["schema"].startswith("FAIL") and "is at 0001, needs" in lines["schema"]
    assert "check failed: storage, auth, schema" in result.err

    current = run_admin(ini, "db", "current")
    assert current.code == 1 and "0001 (head is" in current.out
    upgraded = run_admin(ini, "db", "upgrade")
    assert upgraded.code == 0 and "upgraded from 0001 to" in upgraded.out
    assert run_admin(ini, "db", "current").out.strip().endswith("(head)")
    assert "already at" in run_admin(ini, "db", "upgrade").out
    assert run_admin(ini, "check").code == 0


def test_db_upgrade_creates_both_databases(tmp_path, sqlite_url, mysql_url):
    ini = write_ini(tmp_path / "two.ini", sqlite_url, **{"auth.sqluri": mysql_url})
    result = run_admin(ini, "db", "upgrade")
    assert result.code == 0, result
    assert result.out.count("upgraded from nothing to") == 2
    assert "root@127.0.0.1" in result.out
    assert run_admin(ini, "check").code == 0
    assert add_user(ini, "alice@example.org").code == 0


def add_user(ini, name):
    return run_admin(ini, "user", "add", name, "--password-stdin", stdin=PASSWORD + "\n")


def test_db_history_stamp_and_bad_revision(tmp_path, sqlite_url):
    ini = write_ini(tmp_path / "s.ini", sqlite_url)
    history = run_admin(ini, "db", "history")
    assert history.out.splitlines()[0].startswith("0001 ")
    assert "(head)" in history.out.splitlines()[-1]
    assert run_admin(ini, "db", "upgrade").code == 0
    stamped = run_admin(ini, "db", "stamp", "0001")
    assert stamped.code == 0 and "stamped 0001" in stamped.out
    bad = run_admin(ini, "db", "upgrade", "nonsense")
    assert bad.code == 1 and "nonsense" in bad.err and "Traceback" not in bad.err


def test_missing_ini_bad_key_and_no_schema(tmp_path, sqlite_url):
    missing = run_admin(tmp_path / "absent.ini", "stats")
    assert missing.code == 1
    assert missing.err == f"syncserver-admin: the configuration file {tmp_path / 'absent.ini'} does not exist\n"

    bad = write_ini(tmp_path / "bad.ini", sqlite_url, **{"storage.quota": "5"})
    result = run_admin(bad, "user", "list")
    assert result.code == 1 and "Unknown setting 'storage.quota'" in result.err
    check = run_admin(bad, "check")
    assert check.code == 1 and check.out.startswith("FAIL  configuration")
    assert len(check.out.splitlines()) == 1

    broken = tmp_path / "broken.ini"
    broken.write_text("this is not an ini file\n")
    assert "not a usable configuration file" in run_admin(broken, "stats").err

    empty = write_ini(tmp_path / "empty.ini", sqlite_url)
    result = run_admin(empty, "user", "list")
    assert result.code == 1 and result.out == ""
    assert "has no table" in result.err and "db upgrade" in result.err


def test_database_down_is_one_sentence(tmp_path):
    url = f"mysql+mysqldb://root:dbsecret@127.0.0.1:{free_port()}/nothing"
    ini = write_ini(tmp_path / "down.ini", url)
    for args in (("user", "list"), ("stats",), ("purge-expired",), ("db", "upgrade"),
                 ("db", "current"), ("user", "show", "alice")):
        result = run_admin(ini, *args)
        assert result.code == 1, (args, result)
        assert result.err.count("\n") == 1 and "unavailable" in result.err, (args, result)
        assert "Traceback" not in result.err and "dbsecret" not in result.err
    check = run_admin(ini, "check")
    assert check.code == 1 and "dbsecret" not in check.out
    assert [line.split()[:2] for line in check.out.splitlines()] == [
        ["ok", "configuration"], ["FAIL", "storage"], ["FAIL", "auth"], ["FAIL", "schema"],
        ["FAIL", "throttle"]]


def test_usage_errors_and_help(tmp_path):
    result = run_admin(tmp_path / "x.ini", "user", "frob")
    assert result.code == 2 and "invalid choice" in result.err
    helped = run_admin(tmp_path / "x.ini", "--help")
    assert helped.code == 0
    for command in ("user", "purge-expired", "stats", "check", "db"):
        assert command in helped.out


def test_unexpected_errors_are_one_sentence(admin_ini, backends, monkeypatch):
    from syncserver.storage.sql import SQLStorage

    def broken(self, now_seconds):
        raise sqlalchemy.exc.ProgrammingError("SELECT", {}, Exception("no such column: boom"))

    monkeypatch.setattr(SQLStorage, "get_statistics", broken)
    result = run_admin(admin_ini, "stats")
    assert result.code == 1
    assert result.err.startswith("syncserver-admin: unexpected error: ProgrammingError")
    assert result.err.count("\n") == 1


def _sqlite_path(url):
    return url[len("sqlite:///"):]


def _sqlite_bytes(path):
    """The database file and its WAL: what the store takes on disk."""
    import os

    return sum(os.path.getsize(path + suffix) for suffix in ("", "-wal")
               if os.path.exists(path + suffix))


def test_purge_gives_a_sqlite_file_its_space_back(tmp_path, sqlite_url):
    """New SQLite files use auto_vacuum=INCREMENTAL: the purge shrinks them."""

    storage = sql_storage(sqlite_url)
    try:
        for user_id in (1, 2):
            fill_big(storage, user_id, expired=400)
        path = _sqlite_path(sqlite_url)
        before = _sqlite_bytes(path)
        ini = write_ini(tmp_path / "server.ini", sqlite_url)
        result = run_admin(ini, "purge-expired", "--json")
        assert result.code == 0, result
        summary = json.loads(result.out)
        assert summary["purged"] == 800
        assert summary["reclaimed_bytes"] > 1_000_000
        assert _sqlite_bytes(path) < before - 1_000_000
        assert storage.get_item(1, "history", "keep")["payload"] == "kept"
        assert storage.check_quota(1, 1) == 1 - 4 / 1024  # the purge freed the user's bytes
        plain = run_admin(ini, "purge-expired")
        assert plain.code == 0 and "back to the file system" not in plain.out
    finally:
        storage.close()


def test_purge_vacuum_converts_an_old_sqlite_file(tmp_path, sqlite_url):
    """A file made before auto_vacuum keeps its size until --vacuum rebuilds it once."""
    import sqlite3


    path = _sqlite_path(sqlite_url)
    legacy = sqlite3.connect(path)
    legacy.execute("CREATE TABLE made_by_an_older_version (x)")  # fixes auto_vacuum=NONE
    legacy.close()
    storage = sql_storage(sqlite_url)
    try:
        fill_big(storage, 1, expired=400)
        ini = write_ini(tmp_path / "server.ini", sqlite_url)
        result = run_admin(ini, "purge-expired", "--json")
        assert result.code == 0 and json.loads(result.out)["reclaimed_bytes"] is None
        before = _sqlite_bytes(path)
        result = run_admin(ini, "purge-expired", "--vacuum")
        assert result.code == 0 and "back to the file system" in result.out, result
        assert _sqlite_bytes(path) < before - 500_000
        with storage.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2
        assert storage.get_item(1, "history", "keep")["payload"] == "kept"
    finally:
        storage.close()


def fill_big(storage, user_id, expired):
    """``expired`` 2 KB items whose TTL is over, and one live item "keep"."""
    for start in range(0, expired, 100):
        storage.set_items(user_id, "history", [
            ItemWrite(f"gone{n}", payload="x" * 2048, ttl=0)
            for n in range(start, min(start + 100, expired))], now_centiseconds())
    storage.set_items(user_id, "history", [ItemWrite("keep", payload="kept")],
                      now_centiseconds())
