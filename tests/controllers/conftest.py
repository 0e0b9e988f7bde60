"""A WebTest client around a fresh server on SQLite, and a registered user."""

import dataclasses

import pytest
import webtest

from syncserver.app import make_app
from tests.support import app_settings, basic_auth, sync_username


@dataclasses.dataclass
class Account:
    email: str
    username: str
    password: str

    @property
    def headers(self):
        return basic_auth(self.username, self.password)

    @property
    def root(self):
        return f"/1.1/{self.username}"


def register(app, email, password="correct horse battery"):
    account = Account(email, sync_username(email), password)
    app.put_json(f"/user/1.0/{account.username}", {"email": email, "password": password})
    return account


@pytest.fixture
def make_test_app(sqlite_url):
    """Build a TestApp with extra settings; closed after the test."""
    built = []

    def build(**overrides):
        wsgi_app = make_app({}, **app_settings(sqlite_url, **overrides))
        built.append(wsgi_app)
        return webtest.TestApp(wsgi_app)

    yield build
    for wsgi_app in built:
        wsgi_app.close()


@pytest.fixture
def app(make_test_app):
    return make_test_app()


@pytest.fixture
def alice(app):
    return register(app, "alice@example.com")


@pytest.fixture
def bob(app):
    return register(app, "bob@example.com")
