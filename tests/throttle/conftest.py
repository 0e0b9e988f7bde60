"""Counter stores on every real backend, and a clock the tests move by hand."""

import pytest

from syncserver.throttle.redis_store import RedisCounterStore
from tests.backends import counter_store
from tests.controllers.conftest import app, make_test_app  # noqa: F401 (shared fixtures)

START = 1_700_000_000


class Clock:
    """Epoch seconds that only move when a test says so."""

    def __init__(self, now=START):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture(params=["sqlite", "mysql", "postgresql", "redis"])
def store_url(request):
    """A fresh database or Redis for counters: ``(kind, url)``."""
    if request.param == "redis":
        return "redis", request.getfixturevalue("redis_url")
    return "sql", request.getfixturevalue(f"{request.param}_url")


def make_store(kind, url):
    if kind == "redis":
        return RedisCounterStore.from_url(url)
    return counter_store(url)


@pytest.fixture
def store(store_url):
    built = make_store(*store_url)
    yield built
    built.close()
