"""Random requests at the User API: random usernames, bodies, methods and credentials.

- never a 5xx (except the documented 503 of password resets, which are not
  configured, with ``Retry-After``);
- ``X-Weave-Timestamp`` always; JSON 400s carry a Weave code;
- a rejected request (4xx) changed no account (the ``users`` table is
  compared row by row) and nobody's stored data;
- the answers that succeed say the truth: ``GET /user/1.0/<u>`` is ``1``
  exactly for existing accounts, node/weave answers only for them, a created
  account exists afterwards.
"""

import json
import sqlite3

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import (
    basic_auth,
    check_response,
    json_values,
    quote_segment,
    sync_username,
    unicode_text,
)

EMAILS = [f"user{i}@example.com" for i in range(4)] + [
    "Mixed.Case@Example.COM", "tarek+sync@mozilla.com", "tarek@127.0.0.1",
    "caf\u00e9@b\u00fccher.example", "x@sub.domain.example.org"]

header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=40)

passwords = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.one_of(st.characters(categories=["Cs"]), st.sampled_from("ab\u00e9")),
            min_size=1, max_size=12),
    st.sampled_from(["", "short", "12345678", "correct horse", "\u00e9\u00e9\u00e9\u00e9",
                     "        ", "x" * 300, "p\u00e4ssw\u00f6rd-long"]),
    st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=2),
)

emails = st.one_of(
    st.sampled_from(EMAILS),
    st.sampled_from(["tarek@moz", "tarek@192.12.32334.3", "no-at-sign", "@example.com",
                     "a..b@example.com", "a@b..c", "", " user0@example.com ", "a@" + "x" * 64 + ".com",
                     "x" * 300 + "@example.com", "user0@example.com\n"]),
    unicode_text, st.integers(), st.none(), st.booleans(),
)


@st.composite
def user_bodies(draw):
    kind = draw(st.sampled_from(["registration"] * 4 + ["bytes", "json", "text", "deep", "none",
                                                        "fixed"]))
    if kind == "registration":
        body = {}
        if draw(st.integers(0, 5)):
            body["password"] = draw(passwords)
        if draw(st.integers(0, 5)):
            body["email"] = draw(emails)
        for key in draw(st.lists(st.sampled_from(["captcha-challenge", "captcha-response",
                                                  "e-mail", "username", "x"]), max_size=2)):
            body[key] = draw(json_values)
        return json.dumps(body).encode("utf-8")
    if kind == "bytes":
        return draw(st.binary(max_size=80))
    if kind == "json":
        return json.dumps(draw(json_values)).encode("utf-8")
    if kind == "text":
        return draw(st.one_of(passwords.filter(lambda p: isinstance(p, str)), emails.filter(
            lambda e: isinstance(e, str)))).encode("utf-8", "surrogatepass")
    if kind == "deep":
        depth = draw(st.sampled_from([100, 5000, 100000]))
        return ("[" * depth + "]" * depth).encode()
    if kind == "fixed":
        return draw(st.sampled_from([b"\xff\xfe", b"\xc3\x28", b"null", b"[]", b'"str"', b"1",
                                     b"{", b'{"password": "\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8"}',
                                     b'{"password": "\\ud800\\ud800\\ud800\\ud800", '
                                     b'"email": "user0@example.com"}']))
    return None


SUBPATHS = ["", "", "", "/node/weave", "/node/weave", "/password", "/password", "/email",
            "/password_reset", "/node", "/node/weave/x", "/x"]


def _accounts_table(database):
    with sqlite3.connect(database) as connection:
        return connection.execute(
            "SELECT userid, username, password_hash, email, status FROM users ORDER BY userid"
        ).fetchall()


class _State:
    main = None
    uapi = None


def _register_uapi(sync_app):
    _State.uapi = sync_app.register("uapi")


def test_user_api_fuzz(sync_app):
    if _State.main is None:
        _State.main = sync_app.register("user-fuzz-main")
        response = sync_app.storage(_State.main, "POST", "storage/bookmarks",
                                    [{"id": f"b{i}", "payload": f"bookmark {i}"} for i in range(3)])
        assert response.status_int == 200
        _register_uapi(sync_app)
    main = _State.main
    main_snapshot = sync_app.snapshot(main)
    pool_usernames = [sync_username(email) for email in EMAILS]

    usernames = st.one_of(
        st.sampled_from(pool_usernames),
        st.just("UAPI"),  # placeholder for the dedicated account's name (resolved at run time)
        st.just(main["username"]),
        st.from_regex(r"[a-zA-Z0-9._-]{1,40}", fullmatch=True),
        unicode_text.map(quote_segment),
        st.sampled_from(["a@b.c", "user0%40example.com", "", ".", "..", "-", "x" * 33]),
    )

    @st.composite
    def requests(draw):
        if draw(st.integers(0, 3)) == 0:
            # A coherent registration: the path is the hash of the e-mail in the body.
            email = draw(st.sampled_from(EMAILS))
            body = {"email": email, "password": draw(passwords)}
            if draw(st.booleans()):
                body["captcha-challenge"] = draw(json_values)
            return ("PUT", draw(st.sampled_from(["1.0", "1"])), sync_username(email), "",
                    draw(st.sampled_from(["", "/"])), "", draw(st.sampled_from(["none", "uapi"])),
                    {}, json.dumps(body).encode("utf-8"))
        method = draw(st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS"]))
        api = draw(st.sampled_from(["1.0", "1.0", "1", "1.1", "2", ""]))
        username = draw(usernames)
        sub = draw(st.sampled_from(SUBPATHS))
        slash = draw(st.sampled_from(["", "", "/"]))
        query = draw(st.sampled_from(["", "", "?client=FxHome&v=1.1b2", "?captcha-challenge=x",
                                      "?%ff=%fe"]))
        credentials = draw(st.sampled_from(["uapi", "uapi", "none", "wrong", "garbage", "main"]))
        headers = {}
        if draw(st.integers(0, 6)) == 0:
            headers["X-Weave-Password-Reset"] = draw(st.one_of(
                header_text, st.just("ABCD-EFGH-IJKL-MNOP")))
        if draw(st.integers(0, 6)) == 0:
            headers["X-Weave-Secret"] = draw(header_text)
        content_type = draw(st.one_of(st.none(), st.sampled_from(
            ["application/json", "text/plain", "application/x-www-form-urlencoded"])))
        if content_type:
            headers["Content-Type"] = content_type
        body = draw(user_bodies())
        return method, api, username, sub, slash, query, credentials, headers, body

    @settings(max_examples=200, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    @given(request=requests())
    def run(request):
        method, api, username, sub, slash, query, credentials, headers, body = request
        uapi = _State.uapi
        if username == "UAPI":
            username = uapi["username"]
        headers = dict(headers)
        if credentials == "uapi":
            headers["Authorization"] = uapi["auth"]
        elif credentials == "wrong":
            headers["Authorization"] = basic_auth(uapi["username"], uapi["password"] + "!")
        elif credentials == "garbage":
            headers["Authorization"] = "Basic %%%"
        elif credentials == "main":
            # The storage owner's credentials only ever go with another user's path.
            if username == main["username"]:
                username = uapi["username"]
            headers["Authorization"] = main["auth"]
        path = f"/user/{api}/{username}{sub}{slash}{query}"
        accounts_before = _accounts_table(sync_app.database)
        names_before = {row[1] for row in accounts_before}

        response = sync_app.request(method, path, body, headers)
        allow_503 = sub.rstrip("/") == "/password_reset" or "X-Weave-Password-Reset" in headers
        status = check_response(response, allow_503=allow_503)
        accounts_after = _accounts_table(sync_app.database)
        names_after = {row[1] for row in accounts_after}

        if 400 <= status < 500 or status == 503:
            assert accounts_after == accounts_before, f"{method} {path} refused ({status}) " \
                "but changed the accounts"
        routed = api in ("1.0", "1") and not query.startswith("?%ff")
        if status == 200 and method == "GET" and sub == "" and routed:
            assert response.body in (b"0", b"1")
            assert (response.body == b"1") == (username in names_before), path
        if status == 200 and sub == "/node/weave" and method == "GET":
            assert username in names_before
            assert response.body.decode().startswith("http")
        if method == "GET" and sub == "/node/weave" and routed and username not in names_before:
            assert status == 404, path
        if status == 200 and method == "PUT" and sub == "":
            assert response.body.decode() == username
            assert username in names_after and username not in names_before
            assert username == sync_username(json.loads(body)["email"])

        # The storage owner's data is never touched by anything done here.
        assert sync_app.snapshot(main) == main_snapshot, f"{method} {path} changed {main['username']}"

        # Follow the legitimate changes to the dedicated account.
        if uapi["username"] not in names_after:
            assert status == 200 and method == "DELETE", (method, path, status)
            _register_uapi(sync_app)
        elif status == 200 and method == "POST" and sub == "/password" and \
                username == uapi["username"]:
            uapi["password"] = body.decode("utf-8")
            uapi["auth"] = basic_auth(uapi["username"], uapi["password"])
        check = sync_app.storage(_State.uapi, "GET", "info/collections")
        assert check.status_int == 200, f"the dedicated account stopped working after {method} {path}"

    run()


def test_user_api_deterministic_edges(sync_app):
    """Fixed cases, so a regression names its request."""
    email = "edge-case@example.com"
    username = sync_username(email)
    cases = [
        ("PUT", f"/user/1.0/{username}", b"[]", (400,)),
        ("PUT", f"/user/1.0/{username}", b'"string"', (400,)),
        ("PUT", f"/user/1.0/{username}", b"null", (400,)),
        ("PUT", f"/user/1.0/{username}", b'{"password": "longenough"}', (400,)),
        ("PUT", f"/user/1.0/{username}", b'{"email": "' + email.encode() + b'"}', (400,)),
        ("PUT", f"/user/1.0/{username}", b'{"email": 5, "password": "longenough"}', (400,)),
        ("PUT", f"/user/1.0/{username}", b'{"email": "' + email.encode() + b'", "password": 12345678}',
         (400,)),
        ("PUT", f"/user/1.0/{username}", b'{"email": "' + email.encode() + b'", "password": "short"}',
         (400,)),
        ("PUT", f"/user/1.0/{username}",
         b'{"email": "other@example.com", "password": "longenough"}', (400,)),
        ("PUT", f"/user/1.0/{username}", b"\xff\xfe", (400,)),
        ("PUT", f"/user/1.0/{username}",
         b'{"email": "' + email.encode() + b'", "password": "\\ud800\\ud800\\ud800\\ud800\\ud800'
         b'\\ud800\\ud800\\ud800"}', (400,)),
        ("PUT", f"/user/1.0/{username}",
         b'{"email": "' + email.encode() + b'", "password": "longenough\\udfff"}', (400,)),
        ("PUT", f"/user/1.0/{username}", b"[" * 100000, (400, 413)),
        ("PUT", f"/user/1.0/{username}", b"[" * 30000, (400,)),
        ("PUT", f"/user/1.0/{'x' * 33}",
         b'{"email": "' + email.encode() + b'", "password": "longenough"}', (400, 404)),
        ("GET", f"/user/1.0/{'x' * 33}", None, (200, 404)),
        ("GET", f"/user/1.0/{username}?client=FxHome", None, (200,)),
        ("GET", f"/user/1.0/{username}/node/weave?x=1", None, (404,)),
        ("POST", f"/user/1.0/{username}/password", b"newpassword", (401, 404)),
        ("POST", f"/user/1.0/{username}/password", b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8", (400, 401)),
        ("POST", f"/user/1.0/{username}/email", b"a@example.com", (401,)),
        ("DELETE", f"/user/1.0/{username}", None, (401,)),
    ]
    for method, path, body, expected in cases:
        before = _accounts_table(sync_app.database)
        response = sync_app.request(method, path, body, {})
        status = check_response(response)
        assert status in expected, (method, path, body, status, response.body)
        assert _accounts_table(sync_app.database) == before
        if path.endswith(username) and method == "PUT" and status == 400:
            assert json.loads(response.body) in (3, 4, 6, 7, 9, 12, 15), (path, body, response.body)
    response = sync_app.request("GET", f"/user/1.0/{username}")
    assert response.body == b"0"
