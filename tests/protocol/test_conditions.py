"""Storage 1.5 X-If-* headers, declared sizes and batch parameters (reference §3.4, §3.10)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from webob import Request, exc
from webob.multidict import MultiDict

from syncserver.protocol.conditions import (
    BatchParams,
    DeclaredSizes,
    Preconditions,
    check_declared_sizes,
    parse_batch_params,
    parse_preconditions,
)
from syncserver.protocol.limits15 import Limits15

LIMITS = Limits15(max_post_records=10, max_post_bytes=1000, max_total_records=50,
                  max_total_bytes=5000)


def req(**headers):
    return Request.blank("/1.5/1/storage/col", headers=headers)


def error_of(call, *args):
    with pytest.raises(exc.HTTPBadRequest) as caught:
        call(*args)
    assert caught.value.status_code == 400
    assert caught.value.content_type == "application/json"
    return caught.value.body


# --- X-If-Modified-Since / X-If-Unmodified-Since -----------------------------------------

def test_no_preconditions():
    conditions = parse_preconditions(req())
    assert conditions == Preconditions()
    assert not conditions.not_modified(0) and not conditions.precondition_failed(10 ** 12)


def test_if_modified_since():
    conditions = parse_preconditions(req(**{"X-If-Modified-Since": "1700000000.10"}))
    assert conditions == Preconditions(if_modified_since=170000000010)
    assert conditions.not_modified(170000000010)      # equal: not modified (304)
    assert conditions.not_modified(0)                 # a missing item is 0: 304 as upstream
    assert not conditions.not_modified(170000000011)
    assert not conditions.precondition_failed(10 ** 12)


def test_if_unmodified_since():
    conditions = parse_preconditions(req(**{"X-If-Unmodified-Since": "1700000000.1"}))
    assert conditions == Preconditions(if_unmodified_since=170000000010)
    assert not conditions.precondition_failed(170000000010)   # equal passes
    assert conditions.precondition_failed(170000000011)
    # The value 0 on PUT means "create only if absent": any existing item fails.
    create_only = parse_preconditions(req(**{"X-If-Unmodified-Since": "0"}))
    assert not create_only.precondition_failed(0) and create_only.precondition_failed(1)


def test_sub_centisecond_values_compare_exactly():
    conditions = parse_preconditions(req(**{"X-If-Unmodified-Since": "1.009"}))
    assert not conditions.precondition_failed(100) and conditions.precondition_failed(101)
    conditions = parse_preconditions(req(**{"X-If-Modified-Since": "1.009"}))
    assert conditions.not_modified(100) and not conditions.not_modified(101)


def test_both_headers_are_400():
    assert error_of(parse_preconditions, req(**{"X-If-Modified-Since": "1",
                                                "X-If-Unmodified-Since": "1"})) == b"1"


@pytest.mark.parametrize("header", ["X-If-Modified-Since", "X-If-Unmodified-Since"])
@pytest.mark.parametrize("value", ["-1", "-0.5", "nan", "inf", "abc", "", "1e9", "1,5", " "])
def test_negative_or_unparsable_is_400(header, value):
    assert error_of(parse_preconditions, req(**{header: value})) == b"1"


# --- X-Weave-Records / -Bytes / -Total-Records / -Total-Bytes ----------------------------

def test_declared_sizes_within_limits_equal_passes():
    sizes = check_declared_sizes(req(**{"X-Weave-Records": "10", "X-Weave-Bytes": "1000",
                                        "X-Weave-Total-Records": "50",
                                        "X-Weave-Total-Bytes": "5000"}), LIMITS)
    assert sizes == DeclaredSizes(records=10, bytes=1000, total_records=50, total_bytes=5000)
    assert check_declared_sizes(req(), LIMITS) == DeclaredSizes()


@pytest.mark.parametrize("header,value", [
    ("X-Weave-Records", "11"), ("X-Weave-Bytes", "1001"),
    # test_batch_size_limits: limit + 1 fails.
    ("X-Weave-Total-Records", "51"), ("X-Weave-Total-Bytes", "5001"),
    ("X-Weave-Total-Bytes", "9" * 40),
])
def test_declared_size_over_its_limit_is_400_17(header, value):
    assert error_of(check_declared_sizes, req(**{header: value}), LIMITS) == b"17"


@pytest.mark.parametrize("header", ["X-Weave-Records", "X-Weave-Bytes", "X-Weave-Total-Records",
                                    "X-Weave-Total-Bytes"])
@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "", "+3", "0x10", "9" * 41])
def test_declared_size_not_an_integer_is_400_1(header, value):
    assert error_of(check_declared_sizes, req(**{header: value}), LIMITS) == b"1"


def test_default_limits_match_the_reference():
    check_declared_sizes(req(**{"X-Weave-Total-Records": "10000"}), Limits15())
    assert error_of(check_declared_sizes, req(**{"X-Weave-Total-Records": "10001"}),
                    Limits15()) == b"17"


# --- batch / commit -----------------------------------------------------------------------

def batch(**params):
    return parse_batch_params(MultiDict(params))


def test_no_batch():
    assert batch() == BatchParams()
    assert not batch().in_batch


@pytest.mark.parametrize("value", ["true", "TRUE", "True", ""])
def test_new_batch(value):
    assert batch(batch=value) == BatchParams(new_batch=True)
    assert batch(batch=value).in_batch


def test_bare_batch_parameter_is_a_new_batch():
    params = Request.blank("/c?batch&commit=true").GET
    assert parse_batch_params(params) == BatchParams(new_batch=True, commit=True)


def test_continue_and_commit():
    assert batch(batch="MTUzNjE5ODk3NjkyMQ==") == BatchParams(batch_id="MTUzNjE5ODk3NjkyMQ==")
    assert batch(batch="abc", commit="true") == BatchParams(batch_id="abc", commit=True)
    assert batch(batch="true", commit="TRUE") == BatchParams(new_batch=True, commit=True)


@pytest.mark.parametrize("params", [
    {"commit": "true"}, {"commit": ""}, {"batch": "true", "commit": "false"},
    {"batch": "abc", "commit": "1"}, {"batch": "abc", "commit": ""}, {"batch": "true", "commit": "yes"},
])
def test_bad_commit_is_400(params):
    assert error_of(parse_batch_params, MultiDict(params)) == b"1"


@given(st.dictionaries(st.sampled_from(["X-If-Modified-Since", "X-If-Unmodified-Since",
                                        "X-Weave-Records", "X-Weave-Bytes",
                                        "X-Weave-Total-Records", "X-Weave-Total-Bytes"]),
                       st.text(st.characters(min_codepoint=0x20, max_codepoint=0xff),
                               max_size=20)))
def test_any_headers_parse_or_are_documented_400s(headers):
    request = req(**headers)
    for call in (lambda: parse_preconditions(request),
                 lambda: check_declared_sizes(request, LIMITS)):
        try:
            call()
        except exc.HTTPBadRequest as error:
            assert error.body in (b"1", b"17")


@given(st.dictionaries(st.sampled_from(["batch", "commit", "x"]), st.text(max_size=10)))
def test_any_batch_parameters_parse_or_are_400_1(params):
    try:
        parsed = parse_batch_params(MultiDict(params))
    except exc.HTTPBadRequest as error:
        assert error.body == b"1"
        return
    assert not (parsed.commit and not parsed.in_batch)
    assert not (parsed.new_batch and parsed.batch_id is not None)
