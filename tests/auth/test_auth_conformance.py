"""The auth conformance kit against the SQL and LDAP backends (write mode), bare and behind
the server's login cache."""

import pytest

from syncserver.auth import AuthBackend
from syncserver.settings import parse_settings
from syncserver.testing.auth_conformance import AuthConformanceTests
from tests.auth.ldap_server import ADMIN_DN, ADMIN_PASSWORD
from tests.auth.test_ldap_auth import ldap_settings
from tests.backends import cached_sql_auth, open_from_settings, sql_auth
from tests.support import cheap_password_hasher


class TestSQLAuthConformance(AuthConformanceTests):
    @pytest.fixture
    def auth(self, sqlite_url):
        backend = sql_auth(sqlite_url, password_hasher=cheap_password_hasher())
        yield backend
        backend.close()


class TestCachedSQLAuthConformance(AuthConformanceTests):
    """The same promises hold through the login cache the server puts in front."""

    @pytest.fixture
    def auth(self, sqlite_url):
        backend = cached_sql_auth(sqlite_url, password_hasher=cheap_password_hasher())
        yield backend
        backend.close()


class TestLDAPAuthConformance(AuthConformanceTests):
    @pytest.fixture
    def auth(self, ldap_directory, sqlite_url):
        parsed = parse_settings(ldap_settings(
            ldap_directory, sqlite_url,
            **{"auth.admin_bind_dn": ADMIN_DN, "auth.admin_bind_password": ADMIN_PASSWORD}))
        backend = open_from_settings(AuthBackend, parsed.auth)
        yield backend
        backend.close()
