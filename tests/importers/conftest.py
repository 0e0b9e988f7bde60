"""Fixtures for moving data: servers built from ini files, as an operator has them."""

import io
import uuid

import pytest
import sqlalchemy
import webtest

from syncserver.admin.cli import main
from syncserver.app import build_app
from syncserver.auth import passwords
from tests.conftest import MYSQL_ADMIN_URL, service_missing
from tests.support import cheap_password_hasher


def write_ini(path, sqluri):
    """An operator's ini for ``sqluri``, its schema brought up to date with ``db upgrade``."""
    path.write_text(
        "[app:main]\nuse = egg:syncserver\n"
        f"storage.sqluri = {sqluri}\nstorage.create_tables = true\n"
        "auth.strict_usernames = false\n")
    code, _, err = run_admin("-c", str(path), "db", "upgrade")
    assert code == 0, err
    return str(path)


def run_admin(*argv):
    """Run ``syncserver-admin``; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


class Server:
    """The app an ini names, driven over WebTest."""

    def __init__(self, sqluri):
        self.app = build_app({"storage.sqluri": sqluri, "storage.create_tables": "true",
                              "auth.strict_usernames": "false"})
        self.client = webtest.TestApp(self.app)

    def close(self):
        self.app.close()


@pytest.fixture
def cheap_hashes(monkeypatch):
    """New argon2 hashes with cheap parameters: imports rehash at the first login."""
    monkeypatch.setattr(passwords, "DEFAULT_HASHER", cheap_password_hasher())


@pytest.fixture
def mysql_databases():
    """Make fresh MariaDB databases on demand (source and target); all dropped afterwards."""
    try:
        admin = sqlalchemy.create_engine(MYSQL_ADMIN_URL, isolation_level="AUTOCOMMIT")
        admin.connect().close()
    except Exception as error:
        service_missing("MariaDB/MySQL at " + MYSQL_ADMIN_URL, error)
    names = []

    def make():
        name = "syncserver_test_" + uuid.uuid4().hex[:12]
        with admin.connect() as connection:
            connection.exec_driver_sql(
                f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        names.append(name)
        return sqlalchemy.engine.make_url(MYSQL_ADMIN_URL).set(database=name).render_as_string(
            hide_password=False)

    yield make
    with admin.connect() as connection:
        for name in names:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    admin.dispose()
