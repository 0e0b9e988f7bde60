"""The LDAP authentication backend against a real slapd (tests/auth/ldap_server.py)."""

import concurrent.futures
import threading
import uuid

import pytest

from syncserver.auth import (
    AccountsManagedElsewhere,
    AuthBackend,
    AuthUnavailable,
    RegistrationClosed,
    UserExists,
    UserNotFound,
)
from syncserver.errors import ConfigError
from syncserver.settings import parse_settings
from tests.auth.ldap_server import (
    ADMIN_DN,
    ADMIN_PASSWORD,
    ALICE,
    BOB_DISABLED,
    CAROL_SPECIAL,
    ZOE_UNICODE,
    directory_settings,
)
from tests.backends import open_from_settings


def ldap_settings(server, sqluri, **overrides):
    """``[app:main]`` keys for ``server`` (a running SlapdServer) in read-only mode."""
    return directory_settings(server.uri, sqluri, **overrides)


@pytest.fixture
def make_auth(ldap_directory, sqlite_url):
    built = []

    def build(cached=False, **overrides):
        parsed = parse_settings(ldap_settings(ldap_directory, sqlite_url, **overrides))
        backend = open_from_settings(AuthBackend, parsed.auth, cached=cached)
        built.append(backend)
        return backend

    yield build
    for backend in built:
        backend.close()


@pytest.fixture
def auth(make_auth):
    return make_auth()


@pytest.fixture
def writable(make_auth):
    return make_auth(**{"auth.admin_bind_dn": ADMIN_DN, "auth.admin_bind_password": ADMIN_PASSWORD})


def new_username():
    return "u" + uuid.uuid4().hex[:16]


def test_alias_and_interface(auth):
    from syncserver.auth.ldap import LDAPAuth

    assert isinstance(auth, LDAPAuth)
    assert isinstance(auth, AuthBackend)
    assert auth.is_healthy()


def test_directory_password_authenticates(auth):
    user = auth.authenticate(ALICE.uid, ALICE.password)
    assert user is not None
    assert user.username == ALICE.uid
    assert user.email == ALICE.mail
    assert user.enabled
    assert user.user_id >= 1


@pytest.mark.parametrize("password", ["wrong password", "", ALICE.password + " ",
                                      ALICE.password.upper(), "*"])
def test_wrong_or_empty_password_is_refused(auth, password):
    assert auth.authenticate(ALICE.uid, password) is None


def test_unknown_user_is_refused(auth):
    assert auth.authenticate("nobody", "whatever-password") is None
    assert auth.get_user("nobody") is None


def test_disabled_account_is_refused_but_exists(auth, make_auth):
    assert auth.authenticate(BOB_DISABLED.uid, BOB_DISABLED.password) is None
    bob = auth.get_user(BOB_DISABLED.uid)
    assert bob is not None and not bob.enabled
    assert auth.get_user(ALICE.uid).enabled
    # The filter is what disables him: without it his password works.
    unfiltered = make_auth(**{"auth.enabled_filter": ""})
    assert unfiltered.authenticate(BOB_DISABLED.uid, BOB_DISABLED.password) is not None


def test_special_characters_in_dn_and_password(auth):
    user = auth.authenticate(CAROL_SPECIAL.uid, CAROL_SPECIAL.password)
    assert user is not None and user.email == CAROL_SPECIAL.mail
    assert auth.authenticate(CAROL_SPECIAL.uid, CAROL_SPECIAL.password[:-1]) is None


def test_non_ascii_password(auth):
    assert auth.authenticate(ZOE_UNICODE.uid, ZOE_UNICODE.password) is not None
    assert auth.authenticate(ZOE_UNICODE.uid, "passwords ☃ with spaces") is None


@pytest.mark.parametrize("username", ["*", "*)(uid=*", "alice)(uid=*", "\\2a", "al*",
                                      "alice\x00", "alice*", "(uid=alice)", "*)(|(uid=*"])
def test_filter_injection_never_authenticates(auth, username):
    assert auth.authenticate(username, ALICE.password) is None
    assert auth.get_user(username) is None


@pytest.mark.parametrize("value", ["*", "*)(uid=*", "\\2a", "al*", "alice\x00", "*)(|(uid=*"])
def test_filter_values_are_escaped(auth, value):
    """Even a value the username check would let through matches only itself."""
    filterstr = auth._filter_for(value, enabled_only=True)
    assert auth._find(value, filterstr) is None


def test_ambiguous_filter_refuses_login(make_auth):
    auth = make_auth(**{"auth.user_filter": "(|(uid={username})(uid=alice))"})
    assert auth.authenticate(ZOE_UNICODE.uid, ZOE_UNICODE.password) is None
    assert auth.get_user(ZOE_UNICODE.uid) is None


def test_anonymous_search(make_auth):
    auth = make_auth(**{"auth.bind_dn": "", "auth.bind_password": ""})
    assert auth.authenticate(ALICE.uid, ALICE.password) is not None
    assert auth.authenticate(ALICE.uid, "wrong password") is None


def test_refused_service_account_is_503_not_401(make_auth):
    auth = make_auth(**{"auth.bind_password": "not the password"})
    with pytest.raises(AuthUnavailable):
        auth.authenticate(ALICE.uid, ALICE.password)


def test_user_ids_are_stable_across_restarts_and_distinct(make_auth):
    first = make_auth()
    alice_id = first.authenticate(ALICE.uid, ALICE.password).user_id
    zoe_id = first.get_user(ZOE_UNICODE.uid).user_id
    first.close()
    again = make_auth()
    assert again.get_user(ALICE.uid).user_id == alice_id
    assert again.authenticate(ZOE_UNICODE.uid, ZOE_UNICODE.password).user_id == zoe_id
    assert alice_id != zoe_id


def test_first_logins_racing_get_one_id(make_auth, database_url):
    """Two processes (backends) and many threads see a new user at once: one id."""
    backends = [make_auth(**{"auth.sqluri": database_url}) for _ in range(2)]
    barrier = threading.Barrier(8)

    def login(index):
        barrier.wait()
        return backends[index % 2].id_map.user_id(CAROL_SPECIAL.uid)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(login, range(8)))
    assert len(ids) == 1


def test_uid_number_mode(make_auth):
    auth = make_auth(**{"auth.uid_number_attribute": "uidNumber", "auth.sqluri": ""})
    assert auth.id_map is None
    assert auth.authenticate(ALICE.uid, ALICE.password).user_id == ALICE.uid_number
    assert auth.get_user(CAROL_SPECIAL.uid).user_id == CAROL_SPECIAL.uid_number
    # An entry without the attribute cannot key stored data: no login.
    assert auth.authenticate(ZOE_UNICODE.uid, ZOE_UNICODE.password) is None


def test_repeated_logins_come_from_the_cache(make_auth, ldap_directory):
    auth = make_auth(cached=True)  # the login cache the server puts in front
    assert auth.authenticate(ALICE.uid, ALICE.password) is not None
    ldap_directory.stop()
    assert auth.authenticate(ALICE.uid, ALICE.password) is not None
    with pytest.raises(AuthUnavailable):
        auth.authenticate(ALICE.uid, "another password")


def test_directory_down_is_unavailable_then_recovers(make_auth, ldap_directory):
    auth = make_auth(**{"auth.credentials_cache_seconds": "0"})
    assert auth.authenticate(ALICE.uid, ALICE.password) is not None
    assert auth.pool.idle_count() == 1
    ldap_directory.stop()
    with pytest.raises(AuthUnavailable):
        auth.authenticate(ALICE.uid, ALICE.password)
    with pytest.raises(AuthUnavailable):
        auth.get_user(ALICE.uid)
    assert not auth.is_healthy()
    ldap_directory.start()
    assert auth.authenticate(ALICE.uid, ALICE.password) is not None
    assert auth.is_healthy()


def test_stale_pooled_connection_is_replaced(make_auth, ldap_directory):
    auth = make_auth(**{"auth.credentials_cache_seconds": "0"})
    assert auth.authenticate(ALICE.uid, ALICE.password) is not None
    ldap_directory.stop()
    ldap_directory.start()
    # The pooled connection died with the old slapd; the retry hides it.
    assert auth.authenticate(ALICE.uid, ALICE.password) is not None


def test_frozen_directory_times_out_as_unavailable(make_auth, ldap_directory):
    auth = make_auth(**{"auth.credentials_cache_seconds": "0", "auth.ldap_timeout": "1"})
    assert auth.authenticate(ALICE.uid, ALICE.password) is not None
    ldap_directory.freeze()
    try:
        with pytest.raises(AuthUnavailable):
            auth.authenticate(ALICE.uid, ALICE.password)
    finally:
        ldap_directory.thaw()
    assert auth.authenticate(ALICE.uid, ALICE.password) is not None


def test_starttls_refused_by_the_server_is_unavailable_not_clear_text(make_auth):
    auth = make_auth(**{"auth.ldap_starttls": "true"})
    with pytest.raises(AuthUnavailable, match="StartTLS"):
        auth.authenticate(ALICE.uid, ALICE.password)


def test_read_only_directory_refuses_changes(auth):
    assert not auth.manages_accounts
    with pytest.raises(AccountsManagedElsewhere, match="directory"):
        auth.create_user(new_username(), "a good password", "x@example.org")
    with pytest.raises(AccountsManagedElsewhere):
        auth.set_password(ALICE.uid, "a new password")
    with pytest.raises(AccountsManagedElsewhere):
        auth.set_email(ALICE.uid, "new@example.org")
    with pytest.raises(AccountsManagedElsewhere):
        auth.delete_user(ALICE.uid)
    with pytest.raises(AccountsManagedElsewhere):
        auth.set_enabled(ALICE.uid, False)
    assert auth.authenticate(ALICE.uid, ALICE.password) is not None


def test_write_mode_account_lifecycle(writable):
    assert writable.manages_accounts
    username = new_username()
    created = writable.create_user(username, "first (pass) *word", "new@example.org")
    user = writable.authenticate(username, "first (pass) *word")
    assert user == created
    assert writable.get_user(username).email == "new@example.org"
    with pytest.raises(UserExists):
        writable.create_user(username, "another password", "other@example.org")

    writable.set_password(username, "sécond ☃ password")
    assert writable.authenticate(username, "first (pass) *word") is None
    assert writable.authenticate(username, "sécond ☃ password").user_id == user.user_id

    writable.set_email(username, "changed@example.org")
    assert writable.get_user(username).email == "changed@example.org"

    assert writable.delete_user(username) is True
    assert writable.authenticate(username, "sécond ☃ password") is None
    assert writable.get_user(username) is None
    assert writable.delete_user(username) is False
    with pytest.raises(UserNotFound):
        writable.set_password(username, "whatever password")
    with pytest.raises(UserNotFound):
        writable.set_email(username, "x@example.org")


def test_write_mode_without_password_modify_stores_ssha(writable):
    import ldap

    writable._password_modify_supported = False
    username = new_username()
    writable.create_user(username, "ssha first password", None)
    assert writable.authenticate(username, "ssha first password") is not None
    writable.set_password(username, "ssha second password")
    assert writable.authenticate(username, "ssha second password") is not None
    dn = writable._dn_of(username)
    with writable.connector.bound(ADMIN_DN, ADMIN_PASSWORD) as connection:
        [(_, attributes)] = connection.search_s(dn, ldap.SCOPE_BASE, attrlist=["userPassword"])
    assert attributes["userPassword"][0].startswith(b"{SSHA}")
    writable.delete_user(username)


def test_write_mode_uses_password_modify_when_offered(writable):
    assert writable._supports_password_modify() is True


def test_write_mode_respects_closed_registration(make_auth):
    auth = make_auth(**{"auth.admin_bind_dn": ADMIN_DN,
                        "auth.admin_bind_password": ADMIN_PASSWORD,
                        "auth.allow_new_users": "false"})
    with pytest.raises(RegistrationClosed):
        auth.create_user(new_username(), "a good password", None)


def test_wrong_admin_password_is_unavailable(make_auth):
    auth = make_auth(**{"auth.admin_bind_dn": ADMIN_DN, "auth.admin_bind_password": "nope"})
    with pytest.raises(AuthUnavailable, match="admin"):
        auth.set_email(ALICE.uid, "x@example.org")


# --- settings ---------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    ({"auth.ldapuri": ""}, "auth.ldapuri is required"),
    ({"auth.ldapuri": "http://example.org"}, "auth.ldapuri must start"),
    ({"auth.users_base_dn": ""}, "auth.users_base_dn"),
    ({"auth.user_filter": "(uid=alice)"}, "auth.user_filter"),
    ({"auth.user_filter": "uid={username}"}, "auth.user_filter"),
    ({"auth.enabled_filter": "employeeType=active"}, "auth.enabled_filter"),
    ({"auth.bind_password": ""}, "auth.bind_password is required"),
    ({"auth.admin_bind_dn": ADMIN_DN}, "auth.admin_bind_password is required"),
    ({"auth.ldap_starttls": "true", "auth.ldapuri": "ldaps://127.0.0.1"}, "ldap_starttls"),
    ({"auth.sqluri": "", "storage.sqluri": None}, "auth.sqluri"),
])
def test_bad_ldap_settings_fail_at_start(ldap_directory, sqlite_url, overrides, message):
    raw = ldap_settings(ldap_directory, sqlite_url, **overrides)
    with pytest.raises(ConfigError, match=message):
        parsed = parse_settings(raw)
        open_from_settings(AuthBackend, parsed.auth)


def test_ldap_keys_are_refused_with_another_backend(sqlite_url):
    with pytest.raises(ConfigError, match=r"auth\.ldapuri is read only by the LDAP"):
        parse_settings({"storage.sqluri": sqlite_url, "auth.ldapuri": "ldap://127.0.0.1"})
