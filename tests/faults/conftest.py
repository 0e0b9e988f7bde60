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
def fault_app(private_mysql_url):
    """A TestApp on a fresh database of the private MariaDB, with short timeouts."""
    wsgi_app = make_app({}, **app_settings(private_mysql_url, **FAULT_SETTINGS))
    yield webtest.TestApp(wsgi_app)
    wsgi_app.close()


@pytest.fixture
def admin_engine(private_mysql_url):
    """An admin connection pool on the same database (to lock rows and KILL connections)."""
    engine = sqlalchemy.create_engine(private_mysql_url, isolation_level="AUTOCOMMIT",
                                      connect_args={"connect_timeout": 5})
    yield engine
    engine.dispose()
