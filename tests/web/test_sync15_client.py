"""The client-side kit: minted tokens and signed requests that a verifier accepts."""

import subprocess
import sys

import pytest
from webtest import TestApp

from syncserver.protocol.tokens import parse_token
from syncserver.testing.sync15_client import Credentials, mint_token, signed
from tests.web.hawk_app import make_app

SECRET = "client-kit-secret"


@pytest.fixture(params=["https://sync.example.com", "https://sync.example.com:8443/sync"])
def node(request):
    return request.param


@pytest.fixture
def app(node):
    return TestApp(make_app(node, SECRET))


def test_mint_token(node):
    creds = mint_token(7, node, SECRET, duration=60, now=1000, fxa_uid="abc")
    assert isinstance(creds, Credentials)
    token = parse_token(creds.id, [SECRET])
    assert (token.uid, token.node, token.expires, token.fxa_uid) == (7, node, 1060, "abc")
    assert token.derived_key == creds.key


@pytest.mark.parametrize("path", [
    "/1.5/42/info/collections",
    "/1.5/42/storage/bookmarks/%7B2a5f9e4c-0000-4000-8000-0123456789ab%7D?full=1",
    "/1.5/42/storage/tabs?batch=MTIz%3D&commit=true",
])
def test_signed_requests_are_accepted(app, node, path):
    response = signed(app, "GET", path, mint_token(42, node, SECRET), node, status=200)
    assert response.json["uid"] == 42


def test_signed_with_payload_hash(app, node):
    creds = mint_token(42, node, SECRET)
    response = signed(app, "POST", "/1.5/42/storage/tabs", creds, node, body='[{"id": "a"}]',
                      content_type="application/json", hash_payload=True, status=200)
    assert response.json["uid"] == 42


def test_fixed_nonce_replays_and_offset_goes_stale(app, node):
    creds = mint_token(42, node, SECRET)
    signed(app, "GET", "/1.5/42/info/collections", creds, node, nonce="same", status=200)
    again = signed(app, "GET", "/1.5/42/info/collections", creds, node, nonce="same")
    assert again.status_int == 401 and again.json["reason"] == "nonce already used"
    stale = signed(app, "GET", "/1.5/42/info/collections", creds, node, ts_offset=3600)
    assert stale.status_int == 401 and stale.json["reason"] == "stale timestamp"


def test_importing_the_kit_needs_no_webtest():
    code = ("import sys; sys.modules['webtest'] = None; "
            "import syncserver.testing.sync15_client as kit; "
            "print(kit.mint_token(1, 'https://n.example', 's').id[:3])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "eyJ"
