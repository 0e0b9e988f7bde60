"""Two LDAP backends ("two server processes") on one slapd and one SQL database.

A password change or a deletion made through one must stop the old
credentials in the other within its feed poll interval
(:mod:`syncserver.auth.credential_changes`, read by the login cache the
server puts in front of every backend), not when its credentials cache
expires. The other process's clock is a fake one: no sleeping.
"""

import uuid

import pytest

from syncserver.auth import AuthBackend
from syncserver.settings import parse_settings
from tests.auth.ldap_server import ADMIN_DN, ADMIN_PASSWORD
from tests.auth.test_ldap_auth import ldap_settings
from tests.backends import open_from_settings


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def make_auth(ldap_directory, database_url):
    built = []

    def build(**overrides):
        overrides = {"auth.admin_bind_dn": ADMIN_DN, "auth.admin_bind_password": ADMIN_PASSWORD,
                     **overrides}
        parsed = parse_settings(ldap_settings(ldap_directory, database_url, **overrides))
        backend = open_from_settings(AuthBackend, parsed.auth, cached=True)
        built.append(backend)
        return backend

    yield build
    for backend in built:
        backend.close()


@pytest.fixture
def processes(make_auth):
    """(a, b, b's clock): ``b`` polls the feed at most once a second of its fake clock."""
    clock = FakeClock()
    a, b = make_auth(), make_auth()
    b.feed.clock = clock
    assert b.feed.poll_seconds == 1.0
    return a, b, clock


@pytest.fixture
def username(processes):
    a, _, _ = processes
    name = "u" + uuid.uuid4().hex[:16]
    a.create_user(name, "first password", None)
    yield name
    a.delete_user(name)


def test_password_change_in_one_process_stops_the_old_password_in_another(
        processes, username):
    a, b, clock = processes
    assert b.authenticate(username, "first password") is not None  # now cached in b
    a.set_password(username, "second password")
    assert a.authenticate(username, "first password") is None  # at once where it was made
    # Within b's poll interval its cache still answers, as documented...
    assert b.authenticate(username, "first password") is not None
    clock.advance(1.0)
    # ...and at its next read of the feed b forgets the old password.
    assert b.authenticate(username, "first password") is None
    assert b.authenticate(username, "second password") is not None


def test_deletion_in_one_process_stops_the_account_in_another(processes, username):
    a, b, clock = processes
    assert b.authenticate(username, "first password") is not None
    assert a.delete_user(username) is True
    clock.advance(1.0)
    assert b.authenticate(username, "first password") is None
    assert b.get_user(username) is None


def test_unrelated_users_stay_cached(processes, username, make_auth):
    a, b, clock = processes
    assert b.authenticate(username, "first password") is not None
    other = "u" + uuid.uuid4().hex[:16]
    a.create_user(other, "other password", None)
    try:
        a.set_password(other, "other new password")
        clock.advance(1.0)
        assert b.cache.lookup(username, "first password") is not None
        assert b.authenticate(username, "first password") is not None
    finally:
        a.delete_user(other)


def test_uid_number_mode_uses_the_feed_when_it_has_a_database(make_auth):
    assert make_auth(**{"auth.uid_number_attribute": "uidNumber"}).feed is not None
    # Without a database there is no feed: other processes wait for their cache to expire.
    without = make_auth(**{"auth.uid_number_attribute": "uidNumber", "auth.sqluri": ""})
    assert without.feed is None and without.backend.id_map is None
