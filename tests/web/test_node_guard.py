"""NodeGuard's per-process caches, with a clock stepped by hand (no sleeping, no timing)."""

import logging

import pytest
from webob import Request, exc

from syncserver.auth import User
from syncserver.nodes import NodesUnavailable
from syncserver.web.node_guard import NodeGuard
from tests.backends import sql_nodes

A = "https://a.example.org/"
B = "https://b.example.org/"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class CountingNodes:
    """The real backend, counting the lookups the guard makes (and able to fail them)."""

    def __init__(self, real):
        self.real = real
        self.lookups = 0
        self.down = False

    def get_node(self, url):
        return self._call(self.real.get_node, url)

    def assigned_node(self, username):
        return self._call(self.real.assigned_node, username)

    def _call(self, method, argument):
        self.lookups += 1
        if self.down:
            raise NodesUnavailable("database unavailable: test")
        return method(argument)


@pytest.fixture
def real(sqlite_url):
    backend = sql_nodes(sqlite_url)
    backend.add_node(A, 10)
    backend.add_node(B, 10)
    yield backend
    backend.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def counting(real):
    return CountingNodes(real)


@pytest.fixture
def guard(counting, clock):
    return NodeGuard(counting, A, check_node=True, cache_seconds=5, retry_after=60, clock=clock)


def request():
    return Request.blank("/1.1/alice/info/collections")


def test_flags_are_read_once_per_interval(guard, real, counting, clock):
    assert guard.admit(request()) == 0
    real.update_node(A, backoff=30)
    assert guard.admit(request()) == 0
    assert counting.lookups == 1
    clock.now += 5
    assert guard.admit(request()) == 30
    real.update_node(A, downed=True)
    clock.now += 5
    with pytest.raises(exc.HTTPServiceUnavailable) as raised:
        guard.admit(request())
    assert raised.value.headers["Retry-After"] == "60"
    assert counting.lookups == 3


def test_last_known_flags_survive_a_failed_read(guard, real, counting, clock, caplog):
    real.update_node(A, backoff=30)
    assert guard.admit(request()) == 30
    counting.down = True
    clock.now += 5
    with caplog.at_level(logging.WARNING, "syncserver.web.node_guard"):
        assert guard.admit(request()) == 30
    assert "keeping the last known" in caplog.text
    clock.now += 1
    assert guard.admit(request()) == 30  # not retried before the interval is over
    assert counting.lookups == 2


def test_only_assigned_here_is_remembered(guard, real, counting, clock):
    alice = User(1, "alice")
    real.assign_node("alice")  # A, the first of two empty nodes
    guard.check_user(request(), alice)
    guard.check_user(request(), alice)
    assert counting.lookups == 1
    clock.now += 5
    guard.check_user(request(), alice)
    assert counting.lookups == 2

    bob = User(2, "bob")
    real.update_node(A, available=False)
    real.assign_node("bob")  # B
    for _ in range(2):
        with pytest.raises(exc.HTTPUnauthorized):
            guard.check_user(request(), bob)
    assert counting.lookups == 4
    real.remove_node(B)
    real.update_node(A, available=True)
    assert real.assign_node("bob") == A
    guard.check_user(request(), bob)  # at once, whatever the interval


def test_check_node_off_asks_nothing(counting, clock):
    guard = NodeGuard(counting, A, check_node=False, clock=clock)
    guard.check_user(request(), User(1, "alice"))
    assert counting.lookups == 0


def test_assignment_lookup_failure_is_a_503(guard, counting):
    counting.down = True
    with pytest.raises(NodesUnavailable):
        guard.check_user(request(), User(1, "alice"))
