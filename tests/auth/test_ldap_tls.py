"""LDAP over TLS against a real slapd with a self-signed certificate (``ldap_tls_server``).

Both ways in (StartTLS on ``ldap://``, TLS from the start on ``ldaps://``)
log people in when ``auth.ldap_ca_file`` trusts the certificate, and are a
503 (:class:`AuthUnavailable`) when the certificate is not trusted or names
another host: never a 401, never a silent fall-back to clear text.
"""

from pathlib import Path

import pytest
import webtest

from syncserver.app import make_app
from syncserver.auth import AuthBackend, AuthUnavailable
from syncserver.errors import ConfigError
from syncserver.settings import parse_settings
from tests.auth.ldap_server import ALICE, directory_settings
from tests.backends import open_from_settings
from tests.services import free_port, self_signed_certificate
from tests.support import basic_auth


@pytest.fixture
def make_auth(ldap_tls_server, sqlite_url):
    built = []

    def build(uri, **overrides):
        parsed = parse_settings(directory_settings(uri, sqlite_url, **overrides))
        backend = open_from_settings(AuthBackend, parsed.auth)
        built.append(backend)
        return backend

    yield build
    for backend in built:
        backend.close()


@pytest.fixture
def other_certificate(tmp_path):
    """A certificate for 127.0.0.1 too, but not the one the server shows."""
    certificate, _ = self_signed_certificate(tmp_path, "127.0.0.1")
    return str(certificate)


def logs_in(auth):
    return auth.authenticate(ALICE.uid, ALICE.password) is not None


def test_starttls_with_the_ca_file_logs_in(make_auth, ldap_tls_server):
    auth = make_auth(ldap_tls_server.uri, **{"auth.ldap_starttls": "true",
                                             "auth.ldap_ca_file": ldap_tls_server.ca_file})
    assert logs_in(auth)
    assert auth.authenticate(ALICE.uid, "wrong password") is None
    assert auth.is_healthy()


def test_ldaps_with_the_ca_file_logs_in(make_auth, ldap_tls_server):
    auth = make_auth(ldap_tls_server.ldaps_uri,
                     **{"auth.ldap_ca_file": ldap_tls_server.ca_file})
    assert logs_in(auth)
    assert auth.authenticate(ALICE.uid, "wrong password") is None
    assert auth.is_healthy()


def test_ldaps_second_in_a_uri_list_still_verifies_against_the_ca_file(
        make_auth, ldap_tls_server):
    """The first URI answers nothing; the fail-over to ldaps:// uses the CA file."""
    uri = f"ldap://127.0.0.1:{free_port()} {ldap_tls_server.ldaps_uri}"
    auth = make_auth(uri, **{"auth.ldap_ca_file": ldap_tls_server.ca_file})
    assert logs_in(auth)


@pytest.mark.parametrize("way", ["starttls", "ldaps"])
@pytest.mark.parametrize("problem", ["untrusted", "other certificate", "wrong host name"])
def test_certificate_problems_are_unavailable_never_a_refusal(
        make_auth, ldap_tls_server, other_certificate, way, problem):
    host = "localhost" if problem == "wrong host name" else "127.0.0.1"
    if way == "starttls":
        uri, overrides = f"ldap://{host}:{ldap_tls_server.port}", {"auth.ldap_starttls": "true"}
    else:
        uri, overrides = f"ldaps://{host}:{ldap_tls_server.tls_port}", {}
    if problem == "other certificate":
        overrides["auth.ldap_ca_file"] = other_certificate
    elif problem == "wrong host name":
        overrides["auth.ldap_ca_file"] = ldap_tls_server.ca_file
    if problem == "wrong host name":
        # The name reaches the server in clear text: only TLS can make it fail below.
        assert logs_in(make_auth(f"ldap://{host}:{ldap_tls_server.port}"))
    auth = make_auth(uri, **overrides)
    with pytest.raises(AuthUnavailable):
        auth.authenticate(ALICE.uid, ALICE.password)
    with pytest.raises(AuthUnavailable):
        auth.get_user(ALICE.uid)
    assert not auth.is_healthy()
    assert auth.pool.idle_count() == 0  # no connection got through to be kept


def test_untrusted_certificate_is_a_503_over_http(ldap_tls_server, sqlite_url):
    settings = directory_settings(ldap_tls_server.ldaps_uri, sqlite_url, **{
        "storage.sqluri": sqlite_url, "storage.create_tables": "true",
        "global.retry_after": "120"})
    wsgi_app = make_app({}, **settings)
    try:
        app = webtest.TestApp(wsgi_app)
        response = app.get(f"/1.1/{ALICE.uid}/info/collections",
                           headers=basic_auth(ALICE.uid, ALICE.password), status=503)
        assert response.headers["Retry-After"] == "120"
    finally:
        wsgi_app.close()


def test_missing_ca_file_fails_at_start(make_auth, ldap_tls_server, tmp_path):
    with pytest.raises(ConfigError, match=r"auth\.ldap_ca_file names no readable file"):
        make_auth(ldap_tls_server.ldaps_uri,
                  **{"auth.ldap_ca_file": str(tmp_path / "missing.pem")})


def test_ca_file_that_is_no_certificate_fails_at_start(make_auth, ldap_tls_server, tmp_path):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n"
                       "-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match=r"auth\.ldap_ca_file .* is not a PEM certificate"):
        make_auth(ldap_tls_server.ldaps_uri, **{"auth.ldap_ca_file": str(garbage)})


def test_ca_file_removed_after_start_is_unavailable(make_auth, ldap_tls_server, tmp_path):
    copy = tmp_path / "ca.pem"
    copy.write_bytes(Path(ldap_tls_server.ca_file).read_bytes())
    auth = make_auth(ldap_tls_server.ldaps_uri,
                     **{"auth.ldap_ca_file": str(copy), "auth.credentials_cache_seconds": "0"})
    assert logs_in(auth)
    auth.pool.close()
    copy.unlink()
    with pytest.raises(AuthUnavailable):
        auth.authenticate(ALICE.uid, ALICE.password)
