"""Brute-force protection of Basic-auth logins, through the WSGI app.

Policy under test (small numbers): from 3 failures of one account at one
address each retry waits 1, 2 ... s; from 5 it is refused for 60 s; 8
failures from one address (any account) lock that address; 10 failures of
one account (any address) refuse untrusted addresses for 20 s.
"""

import logging

import pytest
import sqlalchemy
import webtest

from syncserver.app import make_app
from syncserver.throttle.login import RESET_CODE
from tests.controllers.conftest import register
from tests.support import app_settings, basic_auth
from tests.throttle.conftest import Clock

POLICY = {
    "throttle.delay_after": "3",
    "throttle.max_delay_seconds": "8",
    "throttle.max_failures": "5",
    "throttle.lockout_seconds": "60",
    "throttle.address_max_failures": "8",
    "throttle.account_max_failures": "10",
    "throttle.account_lockout_seconds": "20",
    "throttle.window_seconds": "300",
    "throttle.reset_code_max_failures": "3",
}
ATTACKER, OWNER, OTHER = "203.0.113.66", "198.51.100.7", "192.0.2.99"


class Server:
    """One app process: a WebTest client whose throttle runs on ``clock``."""

    def __init__(self, sqluri, clock, **overrides):
        self.wsgi = make_app({}, **app_settings(sqluri, **POLICY, **overrides))
        self.wsgi.throttle.throttle.clock = clock
        self.client = webtest.TestApp(self.wsgi)

    def login(self, account, password=None, address=OWNER, status=200):
        headers = basic_auth(account.username, password or account.password)
        return self.client.get(f"/1.1/{account.username}/info/collections", headers=headers,
                               extra_environ={"REMOTE_ADDR": address}, status=status)

    def fail(self, account, address=ATTACKER, times=1, status=401):
        for _ in range(times):
            self.login(account, "wrong password", address, status=status)

    def lock_out(self, account, address=ATTACKER):
        """Fail at the pace the delays allow until the pair is locked out (5 failures, 3 s)."""
        for _ in range(5):
            response = self.login(account, address=address, status=429) if (
                self.wsgi.throttle.check(account.username, address)[0]) else None
            if response is not None:
                self.wsgi.throttle.throttle.clock.advance(int(response.headers["Retry-After"]))
            self.fail(account, address)
        assert self.wsgi.throttle.check(account.username, address)[0] == 60


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def make_server(clock):
    built = []

    def build(sqluri, **overrides):
        server = Server(sqluri, clock, **overrides)
        built.append(server)
        return server

    yield build
    for server in built:
        server.wsgi.close()


@pytest.fixture
def server(make_server, sqlite_url):
    return make_server(sqlite_url)


@pytest.fixture
def alice(server):
    return register(server.client, "alice@example.com")


def test_growing_delays_then_lockout(server, alice, clock, caplog):
    server.fail(alice, times=3)
    with caplog.at_level(logging.WARNING, logger="syncserver.security"):
        # Refused before the password is checked: even the right one.
        response = server.login(alice, address=ATTACKER, status=429)
    assert response.headers["Retry-After"] == "1"
    refusals = [r.getMessage() for r in caplog.records if "LoginThrottled" in r.getMessage()]
    assert refusals == [f"LoginThrottled: user {alice.username!r} from {ATTACKER} refused for "
                        "1 s (too many failures per account and address)"]
    assert alice.password not in caplog.text
    clock.advance(1)
    server.fail(alice)                                   # 4th failure
    assert server.login(alice, "x", ATTACKER, status=429).headers["Retry-After"] == "2"
    clock.advance(2)
    server.fail(alice)                                   # 5th: locked out
    assert server.login(alice, "x", ATTACKER, status=429).headers["Retry-After"] == "60"
    assert "try again in 60 seconds." in server.login(alice, "x", ATTACKER, status=429).text
    clock.advance(59)
    last = server.login(alice, address=ATTACKER, status=429)
    assert last.headers["Retry-After"] == "1"
    assert "try again in 1 second." in last.text
    clock.advance(1)
    server.login(alice, address=ATTACKER)


def test_owner_elsewhere_is_not_locked_out(server, alice):
    server.lock_out(alice)
    server.login(alice, address=ATTACKER, status=429)
    server.login(alice, address=OWNER)


def test_success_clears_the_pair(server, alice):
    server.fail(alice, address=OWNER, times=2)
    server.login(alice, address=OWNER)
    server.fail(alice, address=OWNER, times=2)
    server.login(alice, address=OWNER)                   # never reached the delay


def test_spraying_from_one_address_locks_that_address(server, alice):
    victims = [register(server.client, f"user{n}@example.com") for n in range(4)]
    for victim in victims:
        server.fail(victim, times=2)
    server.login(alice, address=ATTACKER, status=429)    # 8 failures from the address
    server.login(alice, address=OWNER)


def test_loopback_is_never_locked_out_as_a_whole(server, alice):
    """Behind a proxy not listed as trusted, every client is 127.0.0.1."""
    victims = [register(server.client, f"user{n}@example.com") for n in range(5)]
    for victim in victims:
        server.fail(victim, address="127.0.0.1", times=2)
    server.login(alice, address="127.0.0.1")             # 10 failures, yet alice gets in
    server.fail(victims[0], address="127.0.0.1", times=1)
    server.login(victims[0], address="127.0.0.1", status=429)  # per account still applies


def test_address_exempt_can_be_emptied(make_server, sqlite_url):
    server = make_server(sqlite_url, **{"throttle.address_exempt": ""})
    alice = register(server.client, "alice@example.com")
    victims = [register(server.client, f"user{n}@example.com") for n in range(4)]
    for victim in victims:
        server.fail(victim, address="127.0.0.1", times=2)
    server.login(alice, address="127.0.0.1", status=429)


def test_distributed_guessing_spares_trusted_addresses(server, alice, clock):
    server.login(alice, address=OWNER)                   # OWNER is now trusted for alice
    for n in range(10):
        server.fail(alice, address=f"10.0.0.{n}")
    response = server.login(alice, address=OTHER, status=429)
    assert response.headers["Retry-After"] == "20"
    server.login(alice, address=OWNER)
    clock.advance(20)
    server.login(alice, address=OTHER)


def test_trust_expires(make_server, sqlite_url, clock):
    server = make_server(sqlite_url, **{"throttle.trusted_seconds": "100"})
    alice = register(server.client, "alice@example.com")
    server.login(alice, address=OWNER)
    clock.advance(100)
    for n in range(10):
        server.fail(alice, address=f"10.0.0.{n}")
    server.login(alice, address=OWNER, status=429)


def test_change_password_is_throttled_too(server, alice):
    server.lock_out(alice)
    server.client.post(f"/user/1.0/{alice.username}/password", b"a new long password",
                       headers=alice.headers, extra_environ={"REMOTE_ADDR": ATTACKER},
                       status=429)
    server.login(alice, address=OWNER)


def test_throttle_can_be_turned_off(make_server, sqlite_url):
    server = Server.__new__(Server)
    server.wsgi = make_app({}, **app_settings(sqlite_url, **{"throttle.enabled": "false"}))
    server.client = webtest.TestApp(server.wsgi)
    try:
        alice = register(server.client, "alice@example.com")
        server.fail(alice, times=12)
        server.login(alice, address=ATTACKER)
        assert server.wsgi.throttle is None
    finally:
        server.wsgi.close()


def test_counts_are_shared_by_processes(make_server, database_url):
    first = make_server(database_url)
    second = make_server(database_url)
    alice = register(first.client, "alice@example.com")
    first.fail(alice, times=3)
    second.fail(alice, times=2, status=429)
    first.fail(alice, status=429)


def test_a_pair_let_through_is_checked_again_after_a_failure_here(server, alice):
    """A passed pair is let through unchecked for a while, but not past a failure."""
    server.login(alice, address=ATTACKER)                # let through from now on...
    server.fail(alice, times=3)
    server.login(alice, address=ATTACKER, status=429)    # ...until this process counted one


def test_a_pair_let_through_sees_other_processes_failures_within_cache_seconds(
        make_server, sqlite_url, clock):
    first = make_server(sqlite_url)
    second = make_server(sqlite_url)
    alice = register(first.client, "alice@example.com")
    victims = [register(first.client, f"user{n}@example.com") for n in range(4)]
    first.login(alice, address=ATTACKER)
    for victim in victims:                               # 8 failures from the address
        second.fail(victim, times=2)
    second.login(alice, address=ATTACKER, status=429)
    # first's view of the pair is at most cache_seconds (2) old, as its counters' are.
    first.login(alice, address=ATTACKER)
    clock.advance(2)
    first.login(alice, address=ATTACKER, status=429)


def test_counts_are_shared_through_redis(make_server, sqlite_url, redis_url, clock):
    first = make_server(sqlite_url, **{"throttle.redis_url": redis_url})
    second = make_server(sqlite_url, **{"throttle.redis_url": redis_url})
    alice = register(first.client, "alice@example.com")
    first.fail(alice, times=3)
    assert second.login(alice, address=ATTACKER, status=429).headers["Retry-After"] == "1"
    clock.advance(1)
    second.fail(alice)
    clock.advance(2)
    second.fail(alice)
    assert first.login(alice, address=ATTACKER, status=429).headers["Retry-After"] == "60"
    first.login(alice, address=OWNER)


def test_redis_down_fails_open(make_server, sqlite_url, redis_server, redis_url, caplog):
    server = make_server(sqlite_url, **{"throttle.redis_url": redis_url})
    alice = register(server.client, "alice@example.com")
    redis_server.stop()
    try:
        with caplog.at_level(logging.WARNING, logger="syncserver.security"):
            server.fail(alice, times=6)
            server.login(alice, address=OWNER)
        assert "ThrottleDown" in caplog.text
    finally:
        redis_server.start()


def test_successful_logins_do_not_write(server, alice, clock):
    """The hot path: after the first login marks the address trusted, no writes, few reads."""
    statements = []
    engine = server.wsgi.throttle.throttle.store.engine

    def throttle_statement(conn, cursor, sql, *rest):
        # The engine is shared with the accounts and records: count the counters' own.
        if "login_failures" in sql:
            statements.append(sql.split()[0])

    sqlalchemy.event.listen(engine, "before_cursor_execute", throttle_statement)
    server.login(alice)
    assert statements.count("INSERT") == 1                 # trusted
    statements.clear()
    for _ in range(20):
        server.login(alice)
    assert statements == []                                # all from the process's copy
    clock.advance(2)
    for _ in range(20):
        server.login(alice)
    assert statements == ["SELECT"]                        # one read per cache_seconds


def test_reset_code_scope(server, alice):
    throttle = server.wsgi.throttle.throttle
    assert [throttle.record_failure(RESET_CODE, alice.username) for _ in range(3)] == [0, 1, 60]
    assert throttle.check(RESET_CODE, alice.username) == 60
    throttle.reset(RESET_CODE, alice.username)
    assert throttle.check(RESET_CODE, alice.username) == 0
