"""Invalid UTF-8 anywhere a client controls it is a 4xx on every route, never a 500.

WebOb decodes query strings (``request.GET``) lazily and raises
``UnicodeDecodeError`` from wherever a controller first reads one; every
route is tried here, with the same query, as an anonymous and as an
authenticated client.
"""

import pytest

from syncserver import routing
from tests.controllers.conftest import register
from tests.controllers.test_password_reset_api import smtp_settings

BAD_QUERY = "a=%ff&key=%C3%28&username=%ff&captcha-response=%ff&ids=%ff&newer=%fe"


def concrete(path, username):
    return (path.replace("{api:1\\.1|1\\.0|1}", "1.1").replace("{api:1\\.0|1}", "1.0")
            .replace("{username}", username).replace("{collection}", "history")
            .replace("{item}", "a"))


@pytest.mark.parametrize("route", routing.ROUTES,
                         ids=[f"{r.method} {r.path}" for r in routing.ROUTES])
def test_invalid_utf8_in_the_query_is_never_a_500(make_test_app, smtp_server, route):
    app = make_test_app(**smtp_settings(smtp_server.port,
                                        **{"throttle.reset_mail_interval_seconds": "0"}))
    alice = register(app, "alice@example.com")
    path = concrete(route.path, alice.username) + "?" + BAD_QUERY
    for headers in ({}, alice.headers):
        response = app.request(path, method=route.method, headers=headers, expect_errors=True,
                               body=b"{}" if route.method in ("PUT", "POST") else b"")
        assert response.status_int < 500, (route, response)


def test_a_form_that_is_not_utf8_is_no_500(make_test_app, smtp_server):
    app = make_test_app(**smtp_settings(smtp_server.port))
    page = app.get("/weave-password-reset")
    token = page.form["csrf_token"].value
    for body in (b"username=%ff%fe&csrf_token=" + token.encode(),
                 b"username=\xff\xfe&csrf_token=" + token.encode(), b"\xff=\xfe"):
        response = app.post("/weave-password-reset", body, expect_errors=True,
                            content_type="application/x-www-form-urlencoded")
        assert response.status_int < 500, response
