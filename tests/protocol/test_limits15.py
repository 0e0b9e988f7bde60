"""Storage 1.5 limits: info/configuration and the per-POST split (reference §3.8.3, §3.8.6)."""

import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncserver.protocol.limits15 import Limits15, split_post
from syncserver.storage import ItemWrite


def test_defaults_are_the_python_servers():
    assert Limits15().as_info_configuration() == {
        "max_request_bytes": 2_101_248,
        "max_post_records": 100,
        "max_post_bytes": 2_097_152,
        "max_total_records": 10_000,
        "max_total_bytes": 209_715_200,
        "max_record_payload_bytes": 2_097_152,
    }


def test_info_configuration_is_json_with_all_six_keys():
    limits = Limits15(max_post_records=7)
    assert json.loads(json.dumps(limits.as_info_configuration()))["max_post_records"] == 7
    assert len(limits.as_info_configuration()) == 6


def test_limits_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Limits15().max_post_records = 5


@pytest.mark.parametrize("value", [0, -1, 1.5, "100", True, None])
def test_limits_must_be_positive_integers(value):
    with pytest.raises(ValueError, match="max_post_bytes"):
        Limits15(max_post_bytes=value)


def items(*payloads):
    return [ItemWrite(id=f"{n:03d}", payload=payload) for n, payload in enumerate(payloads)]


def test_everything_fits():
    accepted, failed = split_post(items("a", "b", None), Limits15())
    assert [item.id for item in accepted] == ["000", "001", "002"] and failed == {}


def test_items_past_max_post_records_are_retry_bso():
    # max + 5 items -> 5 failures.
    limits = Limits15(max_post_records=10)
    accepted, failed = split_post(items(*["x"] * 15), limits)
    assert len(accepted) == 10
    assert failed == {f"{n:03d}": "retry bso" for n in range(10, 15)}


def test_bytes_limit_is_inclusive_and_the_total_never_shrinks():
    limits = Limits15(max_post_bytes=10)
    accepted, failed = split_post(items("aaaa", "bbbbbb", "c"), limits)  # 4 + 6 = 10: fits
    assert [item.id for item in accepted] == ["000", "001"]
    assert failed == {"002": "retry bytes"}
    # A large item crosses: it and every later one, however small, are sent back.
    accepted, failed = split_post(items("aaaa", "b" * 20, "c", ""), limits)
    assert [item.id for item in accepted] == ["000"]
    assert failed == {"001": "retry bytes", "002": "retry bytes", "003": "retry bytes"}


def test_bytes_are_utf8():
    accepted, failed = split_post(items("€€€", "x"), Limits15(max_post_bytes=9))
    assert [item.id for item in accepted] == ["000"] and failed == {"001": "retry bytes"}


def test_single_payload_over_the_record_limit_is_retry_bytes():
    limits = Limits15(max_record_payload_bytes=5, max_post_bytes=100)
    accepted, failed = split_post(items("x" * 6, "y" * 5, "z"), limits)
    assert failed == {"000": "retry bytes"}
    assert [item.id for item in accepted] == ["001", "002"]


def test_records_limit_comes_before_bytes():
    limits = Limits15(max_post_records=2, max_post_bytes=3)
    accepted, failed = split_post(items("ab", "cd", "e"), limits)
    assert [item.id for item in accepted] == ["000"]
    assert failed == {"001": "retry bytes", "002": "retry bso"}


@given(st.lists(st.one_of(st.none(), st.text(max_size=8)), max_size=30),
       st.integers(1, 10), st.integers(1, 40), st.integers(1, 8))
def test_split_matches_its_definition(payloads, max_records, max_bytes, max_record):
    limits = Limits15(max_post_records=max_records, max_post_bytes=max_bytes,
                      max_record_payload_bytes=max_record)
    given_items = items(*payloads)
    accepted, failed = split_post(given_items, limits)
    assert len(accepted) + len(failed) == len(given_items)
    assert accepted == [item for item in given_items if item.id not in failed]
    assert len(accepted) <= max_records
    sizes = [len((item.payload or "").encode()) for item in accepted]
    assert sum(sizes) <= max_bytes and all(size <= max_record for size in sizes)
    for index, item in enumerate(given_items):
        if index >= max_records:
            assert failed[item.id] == "retry bso"
