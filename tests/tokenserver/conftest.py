"""Fixtures of the tokenserver tests: a fake accounts server and verifiers pointed at it."""

import shutil

import pytest

from syncserver.tokenserver.oauth import OAuthSettings, OAuthVerifier
from tests.conftest import service_missing
from tests.fxa_server import FakeAccountsServer
from tests.services import self_signed_certificate


class FakeClock:
    """A monotonic clock the test moves by hand, so cache expiry needs no sleeping."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def fxa():
    """A fake Mozilla accounts OAuth server over HTTP, stopped afterwards."""
    server = FakeAccountsServer().start()
    yield server
    server.stop()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def make_verifier(fxa, clock):
    """``make_verifier(**settings)``: an :class:`OAuthVerifier` for ``fxa`` on ``clock``."""

    def make(**overrides):
        options = {"server_url": fxa.url, "timeout": 2.0, **overrides}
        return OAuthVerifier(OAuthSettings(**options), clock=clock)

    return make


@pytest.fixture
def verifier(make_verifier):
    return make_verifier()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    """``(cert.pem, key.pem)``: a self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        service_missing("the openssl program", "not installed")
    return self_signed_certificate(tmp_path_factory.mktemp("fxa-tls"))
