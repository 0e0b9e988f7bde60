"""The SQL authentication backend, on SQLite, MariaDB/MySQL and PostgreSQL."""

import base64
import concurrent.futures
import hashlib
import socket
import threading
import time

import pytest
import sqlalchemy

from syncserver.auth import (
    AuthBackend,
    AuthUnavailable,
    RegistrationClosed,
    User,
    UserExists,
    UserNotFound,
)
from syncserver.auth import sql as sql_module
from syncserver.auth.cached import CachedAuth
from syncserver.auth.credentials_cache import CredentialsCache
from syncserver.auth.sql import SQLAuth, users
from syncserver.db import Database
from syncserver.errors import BackendUnavailable, ConfigError, PolicyRefusal
from syncserver.settings import AuthSettings
from tests.backends import cached_sql_auth, open_from_settings
from tests.support import cheap_password_hasher

CHEAP = cheap_password_hasher()

ODD_CHARACTERS = [":", "!", "@", "=", " ", "\t", "\n", "α", "☃"]


def make_auth(url, create_tables=True, credentials_cache_seconds=300, changes_poll_seconds=1.0,
              **options):
    """SQLAuth as the server runs it: behind the login cache, with the change feed."""
    options.setdefault("password_hasher", CHEAP)
    if not create_tables:
        return CachedAuth(SQLAuth(Database(url), owns_database=True, **options),
                          CredentialsCache(credentials_cache_seconds))
    return cached_sql_auth(url, cache_seconds=credentials_cache_seconds,
                           poll_seconds=changes_poll_seconds, **options)


@pytest.fixture
def auth(database_url):
    backend = make_auth(database_url)
    yield backend
    backend.close()


@pytest.fixture
def other_process(database_url, auth):
    """A second backend on the same database, as another server process would have.

    It reads the credential-change feed on every check (poll interval 0).
    """
    backend = make_auth(database_url, changes_poll_seconds=0)
    yield backend
    backend.close()


def stored_hash(auth, username):
    with auth.backend.engine.connect() as connection:
        return connection.execute(
            sqlalchemy.select(users.c.password_hash).where(users.c.username == username)
        ).scalar_one()


def legacy_ssha(password, salt=b"s4ltS4lt"):
    return "{SSHA}" + base64.b64encode(
        hashlib.sha1(password.encode("utf-8") + salt).digest() + salt).decode()


def legacy_ssha256(password, salt=b"s4ltS4lt"):
    return "{SSHA-256}" + base64.b64encode(
        hashlib.sha256(password.encode("utf-8") + salt).digest() + salt).decode()


def legacy_sscrypt(password, salt=b"s4ltS4lt"):
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=16384, r=8, p=1, dklen=64)
    return "{SSCRYPT}" + base64.b64encode(digest + salt).decode()


class VerifySpy:
    """Wraps the real verify_password of the module and counts its calls."""

    def __init__(self, monkeypatch):
        self.calls = 0
        self._real = sql_module.verify_password
        monkeypatch.setattr(sql_module, "verify_password", self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self._real(*args, **kwargs)


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- basics -------------------------------------------------------------------

def test_is_an_auth_backend(auth):
    assert isinstance(auth, AuthBackend)
    assert auth.is_healthy()


def test_create_get_authenticate(auth):
    user = auth.create_user("alice", "correct horse", "alice@example.com")
    assert isinstance(user, User)
    assert user.username == "alice" and user.email == "alice@example.com" and user.enabled
    assert isinstance(user.user_id, int) and user.user_id > 0
    assert auth.get_user("alice") == user
    assert auth.authenticate("alice", "correct horse") == user
    assert auth.get_user("bob") is None
    assert auth.authenticate("bob", "correct horse") is None
    assert stored_hash(auth, "alice").startswith("$argon2id$")


def test_wrong_password(auth):
    auth.create_user("alice", "correct horse", None)
    assert auth.authenticate("alice", "correct horsE") is None
    assert auth.authenticate("alice", "") is None
    assert auth.authenticate("alice", "correct horse ") is None


def test_user_ids_are_distinct_and_never_reused(auth):
    first = auth.create_user("first", "password1", None)
    second = auth.create_user("second", "password2", None)
    assert second.user_id > first.user_id
    assert auth.delete_user("second")
    third = auth.create_user("third", "password3", None)
    assert third.user_id > second.user_id


def test_usernames_are_case_sensitive(auth):
    auth.create_user("Alice", "password-upper", None)
    assert auth.get_user("alice") is None
    assert auth.authenticate("alice", "password-upper") is None
    lower = auth.create_user("alice", "password-lower", None)
    assert auth.authenticate("alice", "password-lower") == lower
    assert auth.authenticate("Alice", "password-lower") is None


def test_invalid_usernames_are_refused(auth):
    assert auth.get_user("not valid") is None
    assert auth.authenticate("x" * 33, "password") is None
    with pytest.raises(ValueError):
        auth.create_user("a/b", "password", None)


def test_non_ascii_email_round_trips(auth):
    auth.create_user("alice", "password", "Françios@valid.test")
    assert auth.get_user("alice").email == "Françios@valid.test"
    auth.set_email("alice", "☃🔑@example.com")
    assert auth.get_user("alice").email == "☃🔑@example.com"
    auth.set_email("alice", None)
    assert auth.get_user("alice").email is None


def test_odd_characters_anywhere_in_the_password(auth):
    cases = []
    for index, char in enumerate(ODD_CHARACTERS):
        for place, password in (("start", char + "password"), ("middle", "pass" + char + "word"),
                                ("end", "password" + char)):
            username = f"user{index}{place}"
            auth.create_user(username, password, None)
            cases.append((username, password, char))
    for username, password, char in cases:
        assert auth.authenticate(username, password) is not None, repr(password)
        assert auth.authenticate(username, password.replace(char, "")) is None, repr(password)
        assert auth.authenticate(username, password.replace(char, "x")) is None, repr(password)


# --- disabled accounts ------------------------------------------------------------

def test_disabled_account_cannot_authenticate_until_re_enabled(auth):
    auth.create_user("alice", "password", None)
    assert auth.authenticate("alice", "password") is not None  # now cached
    auth.set_enabled("alice", False)
    assert auth.authenticate("alice", "password") is None
    assert auth.get_user("alice").enabled is False
    auth.set_enabled("alice", True)
    assert auth.authenticate("alice", "password").enabled is True


def test_setters_on_missing_users(auth):
    with pytest.raises(UserNotFound):
        auth.set_password("nobody", "password")
    with pytest.raises(UserNotFound):
        auth.set_email("nobody", "a@b.com")
    with pytest.raises(UserNotFound):
        auth.set_enabled("nobody", False)
    assert auth.delete_user("nobody") is False


def test_setting_the_same_value_is_not_user_not_found(auth):
    auth.create_user("alice", "password", "a@example.com")
    auth.set_email("alice", "a@example.com")
    auth.set_enabled("alice", True)
    auth.set_enabled("alice", True)


# --- registration -----------------------------------------------------------------

def test_duplicate_username(auth):
    auth.create_user("alice", "password", None)
    with pytest.raises(UserExists):
        auth.create_user("alice", "another password", None)
    assert auth.authenticate("alice", "password") is not None
    assert auth.authenticate("alice", "another password") is None


def test_concurrent_creates_of_one_name_have_one_winner(database_url, auth):
    racers = 8
    backends = [make_auth(database_url, create_tables=False) for _ in range(2)]
    start = threading.Barrier(racers)

    def race(index):
        start.wait()
        try:
            return backends[index % 2].create_user("racer", f"password-{index}", None)
        except UserExists:
            return None

    try:
        with concurrent.futures.ThreadPoolExecutor(racers) as pool:
            results = list(pool.map(race, range(racers)))
    finally:
        for backend in backends:
            backend.close()
    winners = [(index, user) for index, user in enumerate(results) if user is not None]
    assert len(winners) == 1
    index, user = winners[0]
    assert auth.get_user("racer") == user
    assert auth.authenticate("racer", f"password-{index}") == user


def test_registration_closed(database_url, auth):
    closed = make_auth(database_url, allow_new_users=False)
    try:
        with pytest.raises(RegistrationClosed) as raised:
            closed.create_user("alice", "password", None)
        # A policy, not an outage: never answered as a database being down.
        assert isinstance(raised.value, PolicyRefusal)
        assert not isinstance(raised.value, BackendUnavailable)
        assert closed.get_user("alice") is None
        # Existing accounts and imports still work.
        auth.create_user("bob", "password", None)
        assert closed.authenticate("bob", "password") is not None
        closed.import_user("carol", legacy_ssha("password"))
        assert closed.authenticate("carol", "password") is not None
    finally:
        closed.close()


# --- passwords --------------------------------------------------------------------

def test_set_password(auth):
    auth.create_user("alice", "old password", None)
    assert auth.authenticate("alice", "old password") is not None
    auth.set_password("alice", "new password")
    assert auth.authenticate("alice", "old password") is None
    assert auth.authenticate("alice", "new password") is not None


def test_password_change_in_another_process_is_seen_at_once(auth, other_process):
    auth.create_user("alice", "old password", None)
    assert other_process.authenticate("alice", "old password") is not None  # cached there
    assert other_process.cache.lookup("alice", "old password") is not None
    auth.set_password("alice", "new password")
    assert other_process.authenticate("alice", "old password") is None
    assert other_process.authenticate("alice", "new password") is not None


def test_deletion_or_disabling_in_another_process_is_seen_at_once(auth, other_process):
    auth.create_user("alice", "password", None)
    auth.create_user("bob", "password", None)
    assert other_process.authenticate("alice", "password") is not None
    assert other_process.authenticate("bob", "password") is not None
    auth.set_enabled("alice", False)
    assert auth.delete_user("bob") is True
    assert other_process.authenticate("alice", "password") is None
    assert other_process.authenticate("bob", "password") is None


def test_delete_user(auth):
    auth.create_user("alice", "password", None)
    assert auth.authenticate("alice", "password") is not None
    assert auth.delete_user("alice") is True
    assert auth.authenticate("alice", "password") is None
    assert auth.get_user("alice") is None
    assert auth.delete_user("alice") is False
    # The name is free again.
    assert auth.create_user("alice", "password2", None).username == "alice"


def test_other_processes_forget_within_the_poll_interval(database_url, auth):
    auth.create_user("alice", "old password", None)
    polling = make_auth(database_url, changes_poll_seconds=0.3)
    try:
        assert polling.authenticate("alice", "old password") is not None
        auth.set_password("alice", "new password")
        # Until it reads the feed, the other process still trusts what it verified...
        assert polling.authenticate("alice", "old password") is not None
        time.sleep(0.35)
        # ...and at the next read it forgets.
        assert polling.authenticate("alice", "old password") is None
    finally:
        polling.close()


def test_the_cache_serves_repeats_without_the_database(auth, monkeypatch):
    auth.create_user("alice", "password", None)
    assert auth.authenticate("alice", "password") is not None
    executed = []
    sqlalchemy.event.listen(auth.backend.engine, "before_cursor_execute",
                            lambda *args: executed.append(args[2]))
    auth.feed.poll_seconds = 3600  # no feed read inside this window
    for _ in range(5):
        assert auth.authenticate("alice", "password").username == "alice"
    assert executed == []


# --- credentials cache --------------------------------------------------------------

def test_the_cache_avoids_hashing(auth, monkeypatch):
    auth.create_user("alice", "password", None)
    spy = VerifySpy(monkeypatch)
    for _ in range(5):
        assert auth.authenticate("alice", "password") is not None
    assert spy.calls == 1
    for _ in range(3):
        assert auth.authenticate("alice", "wrong password") is None
    assert spy.calls == 4  # wrong passwords are never cached
    auth.set_password("alice", "new password")
    assert auth.authenticate("alice", "new password") is not None
    assert auth.authenticate("alice", "new password") is not None
    assert spy.calls == 5


def test_without_the_cache_every_request_hashes(database_url, auth, monkeypatch):
    auth.create_user("alice", "password", None)
    uncached = make_auth(database_url, credentials_cache_seconds=0)
    try:
        spy = VerifySpy(monkeypatch)
        for _ in range(3):
            assert uncached.authenticate("alice", "password") is not None
        assert spy.calls == 3
    finally:
        uncached.close()


def test_concurrent_logins(auth):
    auth.create_user("alice", "password", None)
    auth.import_user("legacy", legacy_ssha256("password"))

    def login(index):
        name = "alice" if index % 2 else "legacy"
        return auth.authenticate(name, "password") is not None

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert all(pool.map(login, range(40)))
    assert stored_hash(auth, "legacy").startswith("$argon2id$")


# --- legacy hashes and rehashing ----------------------------------------------------

@pytest.mark.parametrize("builder", [legacy_ssha, legacy_ssha256, legacy_sscrypt])
def test_imported_legacy_hashes_authenticate_and_are_upgraded(auth, builder):
    password = "pässwörd ☃"
    legacy = builder(password)
    user = auth.import_user("legacy", legacy, "legacy@example.com")
    assert user.username == "legacy" and user.enabled
    assert stored_hash(auth, "legacy") == legacy

    assert auth.authenticate("legacy", "wrong password") is None
    assert stored_hash(auth, "legacy") == legacy  # a failed login changes nothing

    assert auth.authenticate("legacy", password) == user
    upgraded = stored_hash(auth, "legacy")
    assert upgraded.startswith("$argon2id$")
    assert CHEAP.verify(password, upgraded) and not CHEAP.needs_rehash(upgraded)

    auth.cache.clear()
    assert auth.authenticate("legacy", password) == user
    assert auth.authenticate("legacy", "wrong password") is None
    assert stored_hash(auth, "legacy") == upgraded


def test_outdated_argon2_parameters_are_upgraded(auth):
    from syncserver.auth.passwords import hash_password

    old = hash_password("password")  # the default (more expensive) parameters
    auth.import_user("alice", old)
    assert auth.authenticate("alice", "password") is not None
    new = stored_hash(auth, "alice")
    assert new != old and not CHEAP.needs_rehash(new)


def test_rehash_never_overwrites_a_concurrent_password_change(auth, other_process, monkeypatch):
    legacy = legacy_ssha256("old password")
    auth.import_user("alice", legacy)
    real_hash_password = sql_module.hash_password

    def change_first(password, hasher=None):
        # Another process changes the password while this one is rehashing.
        monkeypatch.setattr(sql_module, "hash_password", real_hash_password)
        other_process.set_password("alice", "new password")
        return real_hash_password(password, hasher)

    monkeypatch.setattr(sql_module, "hash_password", change_first)
    # The change committed before this check ended: the old password no longer logs in.
    assert auth.authenticate("alice", "old password") is None
    assert CHEAP.verify("new password", stored_hash(auth, "alice"))
    assert auth.authenticate("alice", "old password") is None
    assert auth.authenticate("alice", "new password") is not None


def test_import_user_keeps_the_user_id(auth):
    imported = auth.import_user("olduser", legacy_ssha("password"), "old@example.com", userid=1234)
    assert imported.user_id == 1234
    assert auth.get_user("olduser").user_id == 1234
    created = auth.create_user("newuser", "password", None)
    assert created.user_id > 1234  # the counter moved past the imported id
    with pytest.raises(UserExists):
        auth.import_user("olduser", legacy_ssha("password"), None, userid=99)
    with pytest.raises(ValueError):
        auth.import_user("another", legacy_ssha("password"), None, userid=1234)
    assert auth.get_user("another") is None


def test_import_disabled_user(auth):
    auth.import_user("off", legacy_ssha("password"), enabled=False)
    assert auth.get_user("off").enabled is False
    assert auth.authenticate("off", "password") is None
    assert stored_hash(auth, "off").startswith("{SSHA}")


# --- tables, settings, outages --------------------------------------------------------

def test_create_tables_is_idempotent(database_url, auth):
    auth.create_user("alice", "password", None)
    again = make_auth(database_url, create_tables=True)
    try:
        assert again.authenticate("alice", "password") is not None
    finally:
        again.close()


def test_mysql_table_options(mysql_url):
    backend = make_auth(mysql_url)
    try:
        with backend.backend.engine.connect() as connection:
            engine, collation = connection.exec_driver_sql(
                "SELECT ENGINE, TABLE_COLLATION FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'users'").one()
        assert engine == "InnoDB"
        assert collation == "utf8mb4_bin"
    finally:
        backend.close()


def test_from_settings(sqlite_url):
    settings = AuthSettings(backend=SQLAuth, sqluri=sqlite_url, create_tables=True,
                            allow_new_users=False, credentials_cache_seconds=0,
                            credentials_cache_secret="k")
    backend = open_from_settings(AuthBackend, settings, cached=True)
    try:
        assert backend.backend.allow_new_users is False
        assert backend.cache.enabled is False
        assert backend.is_healthy()
        with pytest.raises(RegistrationClosed):
            backend.create_user("alice", "password", None)
    finally:
        backend.close()


def test_from_settings_requires_a_sqluri():
    with pytest.raises(ConfigError, match=r"auth\.sqluri"):
        SQLAuth.from_settings(AuthSettings(backend=SQLAuth, sqluri=None))


def test_no_connection_before_use():
    # Building the backend must not touch the database.
    backend = SQLAuth(Database(f"mysql+mysqldb://root@127.0.0.1:{closed_port()}/nothing"),
                      owns_database=True)
    backend.close()


@pytest.mark.parametrize("url_template", [
    "mysql+mysqldb://root:dbsecret@127.0.0.1:{port}/nothing",
    "postgresql+psycopg://postgres:dbsecret@127.0.0.1:{port}/nothing",
])
def test_database_down_raises_auth_unavailable(url_template):
    backend = make_auth(url_template.format(port=closed_port()), create_tables=False)
    password = "user-password-☃"
    hashed = legacy_ssha(password)
    try:
        assert backend.is_healthy() is False
        calls = [
            lambda: backend.authenticate("alice", password),
            lambda: backend.get_user("alice"),
            lambda: backend.create_user("alice", password, None),
            lambda: backend.import_user("alice", hashed),
            lambda: backend.set_password("alice", password),
            lambda: backend.set_email("alice", "a@example.com"),
            lambda: backend.set_enabled("alice", False),
            lambda: backend.delete_user("alice"),
        ]
        for call in calls:
            with pytest.raises(AuthUnavailable) as raised:
                call()
            assert isinstance(raised.value, BackendUnavailable)
            message = str(raised.value)
            for secret in (password, hashed, hashed[6:], "dbsecret", "$argon2"):
                assert secret not in message
    finally:
        backend.close()


def test_create_tables_on_a_down_database_raises_unavailable():
    settings = AuthSettings(backend=SQLAuth, create_tables=True,
                            sqluri=f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/x")
    with pytest.raises(BackendUnavailable):
        open_from_settings(AuthBackend, settings)


def test_missing_tables_without_create_tables_stop_start_up(database_url):
    settings = AuthSettings(backend=SQLAuth, sqluri=database_url, create_tables=False)
    with pytest.raises(ConfigError, match=r"auth\.create_tables is false .* no table"):
        open_from_settings(AuthBackend, settings)
