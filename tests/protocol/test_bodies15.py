"""Storage 1.5 request bodies: Content-Type, size, JSON and newlines (reference §3.6)."""

import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from webob import Request, exc

from syncserver.protocol.bodies15 import check_content_type, read_bso_list, read_bso_object
from syncserver.protocol.formats import JSON, NEWLINES

MAX = 1000


def request(method, body=b"", content_type=None, declared_length=True):
    if isinstance(body, str):
        body = body.encode("utf-8")
    req = Request.blank("/1.5/1/storage/col", method=method, body=body)
    if content_type is not None:
        req.content_type = content_type
    if not declared_length:  # a chunked upload: no Content-Length, the server reads to the end
        del req.environ["CONTENT_LENGTH"]
        req.environ["wsgi.input"] = io.BytesIO(body)
        req.environ["wsgi.input_terminated"] = True
    return req


def error_of(call, *args):
    with pytest.raises(exc.HTTPException) as caught:
        call(*args)
    error = caught.value
    assert error.content_type == "application/json"
    return error.status_code, error.body


# --- Content-Type ---------------------------------------------------------------

@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain",
                                          "application/json; charset=utf-8", "Text/Plain",
                                          "text/plain;charset=UTF-8"])
@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_json_content_types(method, content_type):
    assert check_content_type(request(method, content_type=content_type)) == JSON


def test_newlines_for_post_only():
    assert check_content_type(request("POST", content_type="application/newlines")) == NEWLINES
    assert error_of(check_content_type, request("PUT", content_type="application/newlines")) == \
        (415, b"0")


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/html",
                                          "application/octet-stream", "application/whoisi",
                                          "multipart/form-data", "application/jsonx"])
@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_other_content_types_are_415(method, content_type):
    req = request(method, b'{"id": "a"}', content_type)
    assert error_of(check_content_type, req) == (415, b"0")
    reader = read_bso_object if method == "PUT" else read_bso_list
    assert error_of(reader, req, MAX) == (415, b"0")


# --- PUT: one object ------------------------------------------------------------

def test_put_object():
    assert read_bso_object(request("PUT", '{"payload": "x", "ttl": 5}'), MAX) == \
        {"payload": "x", "ttl": 5}
    assert read_bso_object(request("PUT", "{}", "text/plain"), MAX) == {}


@pytest.mark.parametrize("body", ['"notabso"', "42", "[]", '[{"id": "a"}]', "null", "true"])
def test_put_of_a_non_object_is_400_8(body):
    # test_handling_of_invalid_json_in_bso_uploads
    assert error_of(read_bso_object, request("PUT", body), MAX) == (400, b"8")


@pytest.mark.parametrize("body", [b"", b"{", b"{'id': 'a'}", b"{\"a\": NaN}", b"Infinity",
                                  b"\xff\xfe{}", b'{"payload": "\\ud800"}',
                                  "\ufeff{}".encode(), b'{"a": 1} x', b'{"a": "\x01"}'])
def test_put_of_invalid_json_is_400_6(body):
    assert error_of(read_bso_object, request("PUT", body), MAX) == (400, b"6")


def test_nesting_too_deep_for_the_parser_is_400_6():
    body = "[" * 100_000 + "]" * 100_000
    assert error_of(read_bso_object, request("PUT", body), len(body)) == (400, b"6")


def test_surrogate_pairs_are_fine():
    assert read_bso_object(request("PUT", '{"payload": "\\ud83d\\ude00"}'), MAX) == \
        {"payload": "\U0001F600"}


def test_size_limit_is_inclusive_and_413_17():
    body = '{"payload": "' + "x" * (MAX - 16) + '"}'
    assert len(body) == MAX - 1
    assert read_bso_object(request("PUT", body + " "), MAX)["payload"] == "x" * (MAX - 16)
    assert error_of(read_bso_object, request("PUT", body + "  "), MAX) == (413, b"17")


def test_size_limit_without_content_length():
    body = "[" + " " * MAX + "]"
    assert error_of(read_bso_list, request("POST", body, declared_length=False), MAX) == \
        (413, b"17")
    assert read_bso_list(request("POST", '[{"id": "a"}]', declared_length=False), MAX) == \
        [{"id": "a"}]


def test_declared_length_over_the_limit_is_refused_before_reading():
    req = request("PUT", b"{}")
    req.environ["CONTENT_LENGTH"] = str(MAX + 1)
    req.environ["wsgi.input"] = io.BytesIO(b"")  # nothing there: it must not be read
    assert error_of(read_bso_object, req, MAX) == (413, b"17")


# --- POST: a list -------------------------------------------------------------------

def test_post_json_list():
    body = json.dumps([{"id": "a", "payload": "x"}, {"id": "b", "sortindex": "bad"}])
    assert read_bso_list(request("POST", body), MAX) == \
        [{"id": "a", "payload": "x"}, {"id": "b", "sortindex": "bad"}]
    assert read_bso_list(request("POST", "[]"), MAX) == []


@pytest.mark.parametrize("body", ["{}", '{"id": "a"}', '"x"', "5", "null",
                                  '[{"id": "a"}, 5]', '[{"id": "a"}, []]', '[{"payload": "x"}]',
                                  '[{"id": 5}]', '[{"id": null}]', '[{"id": ["a"]}]',
                                  '[{"id": "a"}, {"id": "b"}, {"id": "a"}]'])
def test_post_shape_errors_refuse_the_whole_request(body):
    assert error_of(read_bso_list, request("POST", body), MAX) == (400, b"8")


@pytest.mark.parametrize("body", ["", "[", '[{"id": "a"},]', "[NaN]", '[{"id": "\\udc00"}]'])
def test_post_invalid_json_is_400_6(body):
    assert error_of(read_bso_list, request("POST", body), MAX) == (400, b"6")


@pytest.mark.parametrize("content_type,body,status", [
    # test_batch_empty_commit, as the reference lists it.
    ("application/json", "[]", None),
    ("application/json", "{}", 400),
    ("application/json", "", 400),
    ("application/newlines", "", None),
    ("application/newlines", "\n", 400),
    ("application/newlines", "{}", 400),
    ("application/newlines", "[]", 400),
])
def test_batch_empty_commit_bodies(content_type, body, status):
    req = request("POST", body, content_type)
    if status is None:
        assert read_bso_list(req, MAX) == []
    else:
        assert error_of(read_bso_list, req, MAX)[0] == status


def test_newlines_one_object_per_line():
    lines = ['{"id": "a", "payload": "x"}', '{"id": "b"}']
    for body in ("\n".join(lines), "\n".join(lines) + "\n", "\r\n".join(lines) + "\r\n"):
        assert read_bso_list(request("POST", body, "application/newlines"), MAX) == \
            [{"id": "a", "payload": "x"}, {"id": "b"}]


@pytest.mark.parametrize("body,code", [
    ('{"id": "a"}\n\n', b"6"),            # two trailing newlines: an empty last line
    ('{"id": "a"}\n\n{"id": "b"}', b"6"),  # an empty line in the middle
    ('\n{"id": "a"}', b"6"),
    ('{"id": "a"}\n{', b"6"),
    ('{"id": "a"}\n[{"id": "b"}]', b"8"),  # a line that is not an object
    ('{"id": "a"}\n{"id": "a"}', b"8"),    # duplicate ids
    ('{"id": "a"}\n{"payload": "x"}', b"8"),
    ('{"id": "a"} {"id": "b"}', b"6"),
])
def test_newlines_errors(body, code):
    assert error_of(read_bso_list, request("POST", body, "application/newlines"), MAX) == \
        (400, code)


def test_newlines_not_utf8():
    assert error_of(read_bso_list, request("POST", b'{"id": "\xff"}', "application/newlines"),
                    MAX) == (400, b"6")


def test_errors_are_served_as_json_integers():
    """Raised from a controller, the error is its JSON body, not WebOb's error page."""
    req = request("PUT", "{}", "text/html")
    with pytest.raises(exc.HTTPUnsupportedMediaType) as caught:
        read_bso_object(req, MAX)
    response = Request.blank("/", headers={"Accept": "text/html"}).get_response(caught.value)
    assert response.status == "415 Unsupported Media Type"
    assert response.content_type == "application/json"
    assert response.body == b"0"


# --- Nothing but the documented errors, whatever the body ------------------------------

DOCUMENTED = {(415, b"0"), (413, b"17"), (400, b"6"), (400, b"8")}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["id", "payload", "x"]) | st.text(max_size=3), inner, max_size=4),
    max_leaves=12)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.lists(json_values.map(json.dumps), max_size=4).map(lambda lines: "\n".join(lines).encode()),
    st.lists(st.fixed_dictionaries({"id": st.text(max_size=3)}, optional={"payload": st.text()}),
             max_size=5).map(lambda objs: json.dumps(objs).encode()),
)
content_types = st.one_of(st.none(), st.sampled_from(
    ["application/json", "text/plain", "application/newlines", "text/html", ""]),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=20))


@given(method=st.sampled_from(["PUT", "POST"]), body=bodies, content_type=content_types,
       declared=st.booleans())
def test_any_body_gives_a_value_or_a_documented_error(method, body, content_type, declared):
    req = request(method, body, content_type, declared_length=declared)
    try:
        if method == "PUT":
            value = read_bso_object(req, MAX)
            assert isinstance(value, dict)
        else:
            value = read_bso_list(req, MAX)
            ids = [obj["id"] for obj in value]
            assert all(isinstance(item_id, str) for item_id in ids)
            assert len(set(ids)) == len(ids)
    except exc.HTTPException as error:
        assert (error.status_code, error.body) in DOCUMENTED
