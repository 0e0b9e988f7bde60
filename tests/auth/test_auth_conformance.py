"""The auth conformance kit, run against the SQL backend and the LDAP backend in write mode."""

import pytest

from syncserver.auth.sql import SQLAuth
from syncserver.settings import parse_settings
from syncserver.testing.auth_conformance import AuthConformanceTests
from tests.auth.ldap_server import ADMIN_DN, ADMIN_PASSWORD
from tests.auth.test_ldap_auth import ldap_settings
from tests.support import cheap_password_hasher


class TestSQLAuthConformance(AuthConformanceTests):
    @pytest.fixture
    def auth(self, sqlite_url):
        backend = SQLAuth(sqlite_url, create_tables=True, password_hasher=cheap_password_hasher())
        yield backend
        backend.close()


class TestLDAPAuthConformance(AuthConformanceTests):
    @pytest.fixture
    def auth(self, ldap_directory, sqlite_url):
        parsed = parse_settings(ldap_settings(
            ldap_directory, sqlite_url,
            **{"auth.admin_bind_dn": ADMIN_DN, "auth.admin_bind_password": ADMIN_PASSWORD}))
        backend = parsed.auth.backend.from_settings(parsed.auth)
        yield backend
        backend.close()
