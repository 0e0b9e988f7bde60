"""Fixtures of the tokenserver tests: a fake accounts server, verifiers and apps pointed at it."""

import contextlib
import shutil
import uuid

import pytest
import sqlalchemy

from syncserver.tokenserver.oauth import OAuthSettings, OAuthVerifier
from tests.conftest import MYSQL_ADMIN_URL, service_missing
from tests.fxa_server import FakeAccountsServer
from tests.services import self_signed_certificate
from tests.tokenserver.token_client import TokenApp


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


# --- The tokenserver's HTTP API (tests/tokenserver/test_token_*.py) ------------------


@pytest.fixture(scope="module")
def module_fxa():
    """A fake accounts server shared by a module's tests (its apps keep its URL)."""
    server = FakeAccountsServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["sqlite", "mysql", "postgresql"])
def module_database_url(request, tmp_path_factory, _postgresql_database):
    """Each database in turn, one fresh database per module (accounts keep tests apart)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('tokenserver') / 'tokens.db'}"
    elif request.param == "mysql":
        with module_mysql_database() as url:
            yield url
    else:
        if isinstance(_postgresql_database, Exception):
            service_missing("PostgreSQL", _postgresql_database)
        with module_postgresql_schema(_postgresql_database) as url:
            yield url


@contextlib.contextmanager
def module_mysql_database():
    name = "syncserver_tokens_" + uuid.uuid4().hex[:12]
    try:
        admin = sqlalchemy.create_engine(MYSQL_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(
                f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    except Exception as error:
        service_missing("MariaDB/MySQL at " + MYSQL_ADMIN_URL, error)
    try:
        yield sqlalchemy.engine.make_url(MYSQL_ADMIN_URL).set(database=name).render_as_string(
            hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()


@contextlib.contextmanager
def module_postgresql_schema(database):
    schema = "tk_" + uuid.uuid4().hex[:12]
    owner = sqlalchemy.create_engine(database, isolation_level="AUTOCOMMIT")
    with owner.connect() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield database.update_query_dict(
            {"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with owner.connect() as connection:
            connection.exec_driver_sql("SET lock_timeout = '10s'")
            connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        owner.dispose()


@pytest.fixture
def make_token_app(database_url, fxa):
    """``make_token_app(**keys)``: a :class:`TokenApp` on a fresh database, closed afterwards."""
    apps = []

    def make(url=database_url, server=fxa, **overrides):
        app = TokenApp.build(url, server, **overrides)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


@pytest.fixture
def token_app(make_token_app):
    return make_token_app()


@pytest.fixture(scope="module")
def shared_token_app(module_database_url, module_fxa):
    """One app per database for a whole module: for tests that touch only their own account."""
    app = TokenApp.build(module_database_url, module_fxa)
    yield app
    app.close()
