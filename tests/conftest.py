"""Fixtures shared by the whole suite: real databases, each in a fresh schema.

MariaDB/MySQL and PostgreSQL are reached on 127.0.0.1 (override with
``SYNCSERVER_TEST_MYSQL_URL`` / ``SYNCSERVER_TEST_POSTGRESQL_URL``). When a
server is missing, the tests that need it are skipped on a developer's
machine and **fail** in CI (``CI=true``), so missing coverage never passes
silently. ``scripts/test.sh`` starts the servers that are down.
"""

import os
import subprocess
import uuid

import pytest
import sqlalchemy

from tests.services import MariaDBServer, RedisServer, self_signed_certificate

MYSQL_ADMIN_URL = os.environ.get(
    "SYNCSERVER_TEST_MYSQL_URL", "mysql+mysqldb://root@127.0.0.1:3306/")
POSTGRESQL_ADMIN_URL = os.environ.get(
    "SYNCSERVER_TEST_POSTGRESQL_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def service_missing(what, error):
    """Fail in CI, skip elsewhere: a missing service must never pass silently in CI."""
    message = f"{what} is not reachable: {error}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture
def sqlite_url(tmp_path):
    """A SQLite database file in a fresh temporary folder."""
    return f"sqlite:///{tmp_path / 'syncserver-test.db'}"


@pytest.fixture
def mysql_url():
    """A fresh, empty MariaDB/MySQL database, dropped afterwards."""
    name = "syncserver_test_" + uuid.uuid4().hex[:12]
    try:
        admin = sqlalchemy.create_engine(MYSQL_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(
                f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    except Exception as error:
        service_missing("MariaDB/MySQL at " + MYSQL_ADMIN_URL, error)
    yield sqlalchemy.engine.make_url(MYSQL_ADMIN_URL).set(database=name).render_as_string(
        hide_password=False)
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    admin.dispose()


@pytest.fixture(scope="session")
def _postgresql_database():
    """One PostgreSQL database for the session (creating one copies a template: slow)."""
    name = "syncserver_test_" + uuid.uuid4().hex[:12]
    try:
        admin = sqlalchemy.create_engine(POSTGRESQL_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
    except Exception as error:
        yield error
        return
    yield sqlalchemy.engine.make_url(POSTGRESQL_ADMIN_URL).set(database=name)
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture
def postgresql_url(_postgresql_database):
    """A fresh, empty PostgreSQL schema (first on the search path), dropped afterwards."""
    if isinstance(_postgresql_database, Exception):
        service_missing("PostgreSQL at " + POSTGRESQL_ADMIN_URL, _postgresql_database)
    schema = "t_" + uuid.uuid4().hex[:12]
    owner = sqlalchemy.create_engine(_postgresql_database, isolation_level="AUTOCOMMIT")
    with owner.connect() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = _postgresql_database.update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with owner.connect() as connection:
        connection.exec_driver_sql("SET lock_timeout = '10s'")
        connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    owner.dispose()


@pytest.fixture(params=["sqlite", "mysql", "postgresql"])
def database_url(request):
    """Each of the three supported databases in turn."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A private Redis for the session; a test may stop it but must leave it running."""
    if not RedisServer.available():
        service_missing("redis-server", "the redis-server program is not installed")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
    except RuntimeError as error:
        service_missing("redis-server", error)
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """The private Redis, emptied, as a ``redis://`` URL."""
    import redis

    if not redis_server.running:
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


def _start_slapd(directory, tls_files=None):
    """A started private slapd, or a skip (a failure in CI) saying what is missing."""
    from tests.auth.ldap_server import SlapdServer

    try:
        import ldap  # noqa: F401
    except ImportError as error:
        service_missing("python-ldap", error)
    if not SlapdServer.available():
        service_missing("slapd", "OpenLDAP's slapd/slapadd are not installed (Debian: slapd)")
    try:
        server = SlapdServer(directory, tls_files=tls_files)
        server.start()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as error:
        service_missing("slapd", error)
    return server


@pytest.fixture(scope="session")
def ldap_server(tmp_path_factory):
    """A private slapd with the directory of tests/auth/ldap_server.py, for the session.

    A test may stop or freeze it; :func:`ldap_directory` brings it back.
    """
    server = _start_slapd(tmp_path_factory.mktemp("slapd"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ldap_tls_server(tmp_path_factory):
    """A second private slapd with a self-signed certificate for 127.0.0.1 (IP SAN):
    StartTLS on ``.uri``, TLS from the start on ``.ldaps_uri``; ``.ca_file`` trusts it.

    Tests must not stop it. The plain :func:`ldap_server` has no certificate,
    so it stays the server that refuses StartTLS.
    """
    certificates = tmp_path_factory.mktemp("slapd-tls-certificate")
    try:
        tls_files = self_signed_certificate(certificates, "127.0.0.1")
    except (OSError, subprocess.CalledProcessError) as error:
        service_missing("openssl", error)
    server = _start_slapd(tmp_path_factory.mktemp("slapd-tls"), tls_files=tls_files)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _smtp_server():
    """One real SMTP server (aiosmtpd) for the session."""
    try:
        from tests.services import SMTPServer

        server = SMTPServer().start()
    except Exception as error:
        yield error
        return
    yield server
    server.stop()


@pytest.fixture
def ldap_directory(ldap_server):
    """The private slapd, running and answering (after a test that stopped or froze it)."""
    ldap_server.thaw()
    if not ldap_server.running:
        ldap_server.start()
    return ldap_server


@pytest.fixture
def smtp_server(_smtp_server):
    """The session's SMTP server with no messages yet (``.messages``, ``.mails()``, ``.port``)."""
    if isinstance(_smtp_server, Exception):
        service_missing("SMTP test server (aiosmtpd)", _smtp_server)
    _smtp_server.messages.clear()
    return _smtp_server


@pytest.fixture(scope="session")
def private_mariadb(tmp_path_factory):
    """A private MariaDB for the session that a test may kill, freeze or restart.

    The machine's shared server on 3306 must never be disturbed (other tests
    use it). A test may leave this one killed or paused: the next
    ``private_mysql_url`` brings it back.
    """
    if not MariaDBServer.available():
        service_missing("mariadbd", "mariadbd/mariadb-install-db are not installed")
    server = MariaDBServer(tmp_path_factory.mktemp("mariadb"))
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        service_missing("a private mariadbd", error)
    yield server
    server.kill()


@pytest.fixture
def private_mysql_url(private_mariadb):
    """A fresh database on the private MariaDB (restarted first if a test left it down)."""
    if private_mariadb.running:
        private_mariadb.resume()
    else:
        private_mariadb.start()
    name = "syncserver_fault_" + uuid.uuid4().hex[:12]
    admin = sqlalchemy.create_engine(private_mariadb.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(
            f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    admin.dispose()
    return sqlalchemy.engine.make_url(private_mariadb.url).set(database=name).render_as_string(
        hide_password=False)
