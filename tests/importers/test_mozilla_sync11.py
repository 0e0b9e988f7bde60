"""``migrate --from mozilla-sync11``: a database built from the old server's documented DDL."""

import base64
import hashlib
import time

import pytest
import sqlalchemy

from syncserver.protocol.timestamps import format_timestamp
from tests.importers.conftest import Server, run_admin, write_ini
from tests.support import basic_auth

SALT = b"abcd1234"
T1, T2, T3 = 137_000_000_010, 137_000_000_500, 137_000_100_007
FUTURE = int(time.time()) + 86_400
PAST = int(time.time()) - 60

NEW_STYLE_ACCOUNTS = """
CREATE TABLE user (
    userid INTEGER NOT NULL PRIMARY KEY {autoincrement},
    username VARCHAR(32) NOT NULL UNIQUE,
    password VARCHAR(128),
    accountStatus INTEGER DEFAULT 1,
    mail VARCHAR(64),
    mailVerified INTEGER DEFAULT 0,
    syncNode VARCHAR(64))
"""
OLD_STYLE_ACCOUNTS = """
CREATE TABLE users (
    id INTEGER NOT NULL PRIMARY KEY,
    username VARCHAR(32),
    password_hash VARCHAR(128),
    email VARCHAR(64),
    status INTEGER DEFAULT 0,
    alert TEXT,
    reset VARCHAR(32),
    reset_expiration DATETIME,
    UNIQUE (username, password_hash))
"""
COLLECTIONS = """
CREATE TABLE collections (
    userid INTEGER NOT NULL,
    collectionid INTEGER NOT NULL,
    name VARCHAR(32) NOT NULL,
    PRIMARY KEY (userid, collectionid))
"""
WBO = """
CREATE TABLE {name} (
    id VARCHAR(64) NOT NULL,
    username INTEGER NOT NULL,
    collection INTEGER NOT NULL DEFAULT 0,
    parentid VARCHAR(64),
    predecessorid VARCHAR(64),
    sortindex INTEGER,
    modified BIGINT,
    payload TEXT,
    payload_size INTEGER NOT NULL DEFAULT 0,
    ttl INTEGER DEFAULT 2100000000,
    PRIMARY KEY (id, username, collection)) {options}
"""


def ssha256(password):
    digest = hashlib.sha256(password.encode() + SALT).digest()
    return "{SSHA-256}" + base64.b64encode(digest + SALT).decode()


def sscrypt(password):
    digest = hashlib.scrypt(password.encode(), salt=SALT, n=16384, r=8, p=1, dklen=64)
    return "{SSCRYPT}" + base64.b64encode(digest + SALT).decode()


def build_old_database(url, old_style=False, shards=0):
    """alice (id 7, scrypt) and bob (id 12, sha256, disabled) with records, as the old server left them."""
    engine = sqlalchemy.create_engine(url)
    mysql = engine.dialect.name == "mysql"
    wbo_names = [f"wbo{i}" for i in range(shards)] if shards else ["wbo"]
    with engine.begin() as connection:
        if old_style:
            connection.exec_driver_sql(OLD_STYLE_ACCOUNTS)
            insert = ("INSERT INTO users (id, username, password_hash, email, status) "
                      "VALUES (?, ?, ?, ?, ?)")
        else:
            connection.exec_driver_sql(NEW_STYLE_ACCOUNTS.format(
                autoincrement="AUTO_INCREMENT" if mysql else ""))
            insert = ("INSERT INTO user (userid, username, password, mail, accountStatus) "
                      "VALUES (?, ?, ?, ?, ?)")
        connection.exec_driver_sql(COLLECTIONS)
        for name in wbo_names:
            connection.exec_driver_sql(WBO.format(
                name=name, options="ENGINE=InnoDB DEFAULT CHARSET=latin1" if mysql else ""))
        if mysql:
            insert = insert.replace("?", "%s")
        connection.exec_driver_sql(insert, (7, "alice", sscrypt("alice's old password"),
                                             "alice@example.com", 1))
        connection.exec_driver_sql(insert, (12, "bob", ssha256("bob pw 12345"),
                                             "bob@example.com", 0))
        connection.exec_driver_sql(
            "INSERT INTO collections (userid, collectionid, name) VALUES (7, 100, 'custom.things')")
        rows = [
            # user, collection, id, modified, sortindex, parentid, payload, ttl
            (7, 7, "b1", T1, 10, "menu", "first", None),
            (7, 7, "b2", T2, None, None, "second", FUTURE),
            (7, 7, "b3", T3, 30, "menu", "third", None),
            (7, 7, "old", T3 - 1, None, None, "expired", PAST),
            (7, 6, "global", T1, None, None, '{"syncID":"x"}', None),
            (7, 100, "c1", T2, None, None, "custom", None),
            (7, 50, "lost", T2, None, None, "no name anywhere", None),
            (12, 4, "h1", T1, None, None, "bob's history", None),
        ]
        for user, collection, item_id, modified, sortindex, parentid, payload, ttl in rows:
            table = wbo_names[user % len(wbo_names)]
            columns = "id, username, collection, modified, sortindex, parentid, payload, payload_size"
            values = [item_id, user, collection, modified, sortindex, parentid, payload,
                      len(payload)]
            if ttl is not None:
                columns += ", ttl"
                values.append(ttl)
            marks = ", ".join(["%s" if mysql else "?"] * len(values))
            connection.exec_driver_sql(f"INSERT INTO {table} ({columns}) VALUES ({marks})",
                                       tuple(values))
    engine.dispose()


@pytest.fixture(params=["sqlite", "mysql"])
def databases(request, tmp_path):
    """(old server's database URL, new server's database URL)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}", f"sqlite:///{tmp_path / 'new.db'}"
    make = request.getfixturevalue("mysql_databases")
    return make(), make()


def test_accounts_and_records_arrive_with_ids_passwords_and_stamps(databases, tmp_path,
                                                                   cheap_hashes):
    old_url, new_url = databases
    build_old_database(old_url)
    ini = write_ini(tmp_path / "new.ini", new_url)

    code, out, err = run_admin("-c", ini, "migrate", "--from", "mozilla-sync11", old_url)
    assert (code, err) == (0, ""), err
    assert "accounts created: 2" in out
    assert "records: 6" in out  # the expired item and the nameless collection stay behind

    server = Server(new_url)
    client = server.client
    alice = server.app.auth.get_user("alice")
    assert (alice.user_id, alice.email, alice.enabled) == (7, "alice@example.com", True)
    bob = server.app.auth.get_user("bob")
    assert (bob.user_id, bob.enabled) == (12, False)

    headers = basic_auth("alice", "alice's old password")
    info = client.get("/1.1/alice/info/collections", headers=headers).json
    assert info == {"bookmarks": float(format_timestamp(T3)),
                    "meta": float(format_timestamp(T1)),
                    "custom.things": float(format_timestamp(T2))}
    # A client that last synced at T2 continues incrementally: only b3 is newer.
    newer = client.get(f"/1.1/alice/storage/bookmarks?newer={format_timestamp(T2)}&full=1",
                       headers=headers).json
    assert newer == [{"id": "b3", "modified": float(format_timestamp(T3)), "sortindex": 30,
                      "parentid": "menu", "payload": "third"}]
    assert client.get("/1.1/alice/storage/bookmarks?sort=index", headers=headers).json == [
        "b3", "b1", "b2"]
    assert server.app.storage.export_records(7, "bookmarks")[1].expires == FUTURE
    client.get("/1.1/alice/info/collections", headers=basic_auth("alice", "wrong"), status=401)
    client.get("/1.1/bob/info/collections", headers=basic_auth("bob", "bob pw 12345"),
               status=401)  # disabled on the old server, disabled here
    # Writing after the migration is stamped after every migrated stamp.
    written = client.put_json("/1.1/alice/storage/bookmarks/b4", {"payload": "new"},
                              headers=headers).json
    assert written > T3 / 100
    server.close()


def test_a_second_run_changes_nothing_and_a_dry_run_writes_nothing(tmp_path, cheap_hashes):
    old_url, new_url = f"sqlite:///{tmp_path / 'old.db'}", f"sqlite:///{tmp_path / 'new.db'}"
    build_old_database(old_url)
    ini = write_ini(tmp_path / "new.ini", new_url)

    code, out, _ = run_admin("-c", ini, "migrate", "--from", "mozilla-sync11", "--dry-run",
                             old_url)
    assert code == 0 and "dry run" in out and "accounts created: 2" in out
    server = Server(new_url)
    assert server.app.auth.get_user("alice") is None
    server.close()

    assert run_admin("-c", ini, "migrate", "--from", "mozilla-sync11", old_url)[0] == 0
    server = Server(new_url)
    first = [server.app.storage.export_records(7, name) for name in ("bookmarks", "meta")]
    stamps = server.app.storage.get_collection_timestamps(7)
    server.close()
    code, out, _ = run_admin("-c", ini, "migrate", "--from", "mozilla-sync11", old_url)
    assert code == 0 and "accounts created: 0" in out and "already present" in out
    server = Server(new_url)
    assert [server.app.storage.export_records(7, name) for name in ("bookmarks", "meta")] == first
    assert server.app.storage.get_collection_timestamps(7) == stamps
    server.close()


def test_old_style_users_table_and_sharded_wbo_tables(tmp_path, cheap_hashes):
    old_url, new_url = f"sqlite:///{tmp_path / 'old.db'}", f"sqlite:///{tmp_path / 'new.db'}"
    build_old_database(old_url, old_style=True, shards=4)
    ini = write_ini(tmp_path / "new.ini", new_url)
    code, _, err = run_admin("-c", ini, "migrate", "--from", "mozilla-sync11", old_url)
    assert code == 0, err
    server = Server(new_url)
    headers = basic_auth("alice", "alice's old password")
    assert sorted(server.client.get("/1.1/alice/storage/bookmarks", headers=headers).json) == [
        "b1", "b2", "b3"]
    assert server.app.storage.export_records(12, "history")[0].payload == "bob's history"
    server.close()


def test_an_id_taken_on_the_new_server_is_replaced_and_reported(tmp_path, cheap_hashes):
    old_url, new_url = f"sqlite:///{tmp_path / 'old.db'}", f"sqlite:///{tmp_path / 'new.db'}"
    build_old_database(old_url)
    server = Server(new_url)
    server.app.auth.import_user("someone", "{SSHA}x", None, userid=12)
    server.close()
    ini = write_ini(tmp_path / "new.ini", new_url)
    code, out, _ = run_admin("-c", ini, "migrate", "--from", "mozilla-sync11", old_url)
    assert code == 0
    server = Server(new_url)
    bob = server.app.auth.get_user("bob")
    assert bob.user_id != 12
    assert f"user bob: id 12 was taken, so it was given id {bob.user_id}" in out
    assert server.app.storage.export_records(bob.user_id, "history")[0].payload == "bob's history"
    assert server.app.storage.get_collection_timestamps(12) == {}
    server.close()


def test_not_an_old_server_database_is_one_sentence(tmp_path):
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    sqlalchemy.create_engine(empty).connect().close()
    ini = write_ini(tmp_path / "new.ini", f"sqlite:///{tmp_path / 'new.db'}")
    code, _, err = run_admin("-c", ini, "migrate", "--from", "mozilla-sync11", empty)
    assert code == 1 and "neither a 'user' nor a 'users' table" in err
    code, _, err = run_admin("-c", ini, "migrate", "--from", "mozilla-sync11", "nonsense://x")
    assert code == 1 and "not a usable database URL" in err and "Traceback" not in err
