"""Run ``syncserver-admin`` in-process through ``main([...])`` against real databases."""

import io
import textwrap

import pytest

from syncserver.admin.cli import main
from tests.backends import prepared_database, sql_auth, sql_storage
from tests.support import cheap_password_hasher


class Result:
    def __init__(self, code, out, err):
        self.code, self.out, self.err = code, out, err

    def __repr__(self):
        return f"Result(code={self.code}, out={self.out!r}, err={self.err!r})"


class TTYInput(io.StringIO):
    def isatty(self):
        return True


def run_admin(ini, *args, stdin="", tty=False):
    """Run one command in this process; returns its exit code and what it wrote.

    A purge keeps the test process's CPU priority (``--nice 0``) unless the
    test says otherwise: by default it would lower it for every later test.
    """
    if "purge-expired" in args and "--nice" not in args:
        args = (*args, "--nice", "0")
    out, err = io.StringIO(), io.StringIO()
    source = TTYInput(stdin) if tty else io.StringIO(stdin)
    code = main(["-c", str(ini), *args], stdout=out, stderr=err, stdin=source)
    return Result(code, out.getvalue(), err.getvalue())


def write_ini(path, sqluri, **extra):
    lines = [f"storage.sqluri = {sqluri}"] + [f"{key} = {value}" for key, value in extra.items()]
    path.write_text(textwrap.dedent("""\
        [app:main]
        use = egg:syncserver
        """) + "\n".join(lines) + "\n")
    return path


@pytest.fixture(params=["sqlite", "mysql"])
def admin_url(request):
    """SQLite and MariaDB, each upgraded to the newest schema."""
    url = request.getfixturevalue(f"{request.param}_url")
    prepared_database(url, pool_size=1).close()
    return url


@pytest.fixture
def admin_ini(tmp_path, admin_url):
    """Plain usernames (alice, bob) are allowed here, as on a server with
    ``auth.strict_usernames = false``; tests/admin/test_users.py checks the strict default."""
    return write_ini(tmp_path / "server.ini", admin_url, **{
        "storage.quota_size": "5120", "auth.strict_usernames": "false"})


@pytest.fixture
def backends(admin_url):
    """The storage and auth backends on the same database, to arrange and inspect data."""
    storage = sql_storage(admin_url)
    auth = sql_auth(admin_url, password_hasher=cheap_password_hasher())
    yield storage, auth
    storage.close()
    auth.close()


@pytest.fixture(autouse=True)
def _cheap_hashes(monkeypatch):
    """The admin commands hash with argon2's real cost otherwise: the suite must stay fast."""
    from syncserver.auth import sql

    original = sql.SQLAuth.__init__

    def patched(self, *args, **kwargs):
        kwargs.setdefault("password_hasher", cheap_password_hasher())
        original(self, *args, **kwargs)

    monkeypatch.setattr(sql.SQLAuth, "__init__", patched)
