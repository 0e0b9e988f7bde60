"""Property tests of the tokenserver's inputs: any X-KeyID, X-Client-State, Authorization or JWT.

Whatever a client sends, the answer is never a 5xx, always JSON with
``X-Timestamp``, and a refused request writes nothing (rows of both tables
and the nodes' loads are counted before and after). On every database.
"""

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncserver.tokenserver.errors import TokenserverError
from syncserver.tokenserver.keyid import parse_key_id
from tests.tokenserver.token_client import client_state, fxa_uid, key_id

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture])

#: Header values a WSGI server can hand over: latin-1 text without line breaks.
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                    blacklist_characters="\x7f"), max_size=80)
#: Values close to real X-KeyIDs, where the parser's edge cases are.
near_key_ids = st.builds(
    lambda stamp, fingerprint, tail: f"{stamp}-{fingerprint}{tail}",
    st.one_of(st.integers(-5, 2**64).map(str), st.just(""), st.just("+1"), header_text),
    st.one_of(st.binary(max_size=20).map(
        lambda raw: base64.urlsafe_b64encode(raw).decode().rstrip("=")), header_text),
    st.sampled_from(["", "=", "==", "-", "--x", " ", "\u00e9"]))
key_id_values = st.one_of(header_text, near_key_ids)


@pytest.fixture
def app(shared_token_app):
    return shared_token_app


def check(app, response, before):
    assert response.status_int < 500, response.body
    assert response.content_type == "application/json"
    assert response.headers["X-Timestamp"].isdigit()
    assert isinstance(response.json, dict)
    if response.status_int != 200:
        assert app.row_counts() == before


@given(value=key_id_values, client_state_header=st.one_of(st.none(), header_text))
def test_parse_key_id_raises_only_protocol_errors(value, client_state_header):
    try:
        keys_changed_at, state = parse_key_id(value, client_state_header)
    except TokenserverError as error:
        assert error.http_status in (400, 401)
        return
    assert keys_changed_at is None or 0 < keys_changed_at < 2**63
    assert len(state) <= 32 and all(char in "0123456789abcdef" for char in state)
    assert value.partition("-")[2].rstrip("=") or state == ""


@PROPERTY_SETTINGS
@given(value=key_id_values, client_state_header=st.one_of(st.none(), header_text),
       existing=st.booleans())
def test_any_key_id_never_fails_the_server(app, value, client_state_header, existing):
    account = fxa_uid("properties-existing" if existing else "properties-new")
    if existing:
        app.token(account, generation=1000, keys_changed_at=1000, status=200)
    before = app.row_counts()
    response = app.token(account, generation=1000, key_id_header=value,
                         client_state_header=client_state_header)
    check(app, response, before)
    if response.status_int == 200 and not existing:
        app.users.delete_account(account)  # the next example starts new again


def mutated_tokens(fxa):
    """Real access tokens with one part replaced, dropped, duplicated or garbled."""
    def mutate(parts, index, replacement):
        parts = list(parts)
        parts[index % len(parts)] = replacement
        return ".".join(parts)

    real = fxa.mint({"sub": fxa_uid("properties-jwt")})
    return st.one_of(
        header_text,
        st.builds(mutate, st.just(real.split(".")), st.integers(0, 2),
                  st.one_of(header_text, st.binary(max_size=60).map(
                      lambda raw: base64.urlsafe_b64encode(raw).decode().rstrip("=")),
                      st.dictionaries(st.text(max_size=8), st.one_of(
                          st.integers(), st.text(max_size=8), st.none(), st.booleans()),
                          max_size=5).map(lambda value: base64.urlsafe_b64encode(
                              json.dumps(value).encode()).decode().rstrip("=")))),
        st.builds(lambda cut: real[:cut], st.integers(0, len(real))),
        st.just(real + "." + real.split(".")[1]),
        st.text("0123456789abcdef", min_size=64, max_size=64),
    )


@PROPERTY_SETTINGS
@given(data=st.data())
def test_any_access_token_never_fails_the_server(app, data):
    token = data.draw(mutated_tokens(app.fxa))
    before = app.row_counts()
    response = app.token(authorization=f"Bearer {token}",
                         key_id_header=key_id(1000, client_state("properties")))
    check(app, response, before)
    assert response.status_int in (200, 401)


@PROPERTY_SETTINGS
@given(authorization=header_text)
def test_any_authorization_header_never_fails_the_server(app, authorization):
    before = app.row_counts()
    response = app.token(authorization=authorization)
    check(app, response, before)
    assert response.status_int == 401
