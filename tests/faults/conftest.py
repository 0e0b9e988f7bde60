"""Fault tests: a server (in process) on the private MariaDB, which the tests kill and freeze.

The timeouts are short so that a frozen database costs seconds, not the
production defaults; the tests assert the outcome (503, then 200), never a
duration, and bound each request generously so a regression fails instead
of hanging the suite.
"""

import pytest
import sqlalchemy
import webtest

from syncserver.app import make_app
from tests.faults.support import FAULT_SETTINGS
from tests.support import app_settings


@pytest.fixture
def make_fault_app(private_mysql_url):
    """Build TestApps on a fresh database of the private MariaDB, with short timeouts."""
    built = []

    def make(**overrides):
        wsgi_app = make_app({}, **app_settings(private_mysql_url,
                                               **dict(FAULT_SETTINGS, **overrides)))
        built.append(wsgi_app)
        return webtest.TestApp(wsgi_app)

    yield make
    for wsgi_app in built:
        wsgi_app.close()


@pytest.fixture
def fault_app(make_fault_app):
    return make_fault_app()


@pytest.fixture
def admin_engine(private_mysql_url):
    """An admin connection pool on the same database (to lock rows and KILL connections)."""
    engine = sqlalchemy.create_engine(private_mysql_url, isolation_level="AUTOCOMMIT",
                                      connect_args={"connect_timeout": 5})
    yield engine
    engine.dispose()
