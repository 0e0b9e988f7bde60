"""Query strings of collection reads and deletes."""

import pytest
from webob import exc
from webob.multidict import MultiDict

from syncserver.protocol.query import parse_item_query, wants_full_records
from syncserver.storage import ItemQuery


def parse(**params):
    return parse_item_query(MultiDict(params))


def test_empty_query_selects_everything():
    assert parse() == ItemQuery()
    assert not parse().has_filters()


def test_all_parameters():
    query = parse(ids="a,b,a", parentid="p", predecessorid="q", newer="10.5", older="20",
                  index_above="1.5", index_below="9", sort="newest", limit="10", offset="5")
    assert query == ItemQuery(ids=("a", "b"), parentid="p", predecessorid="q", newer=1050,
                              older=2000, index_above=1.5, index_below=9.0, sort="newest",
                              limit=10, offset=5)


def test_unknown_parameters_and_sorts_are_ignored():
    assert parse(client="FxHome", v="1.1b2", sort="sideways") == ItemQuery()


def test_last_repeated_value_wins():
    params = MultiDict([("newer", "1"), ("newer", "2")])
    assert parse_item_query(params).newer == 200


def test_limit_zero_or_negative_means_no_limit_and_offset_needs_limit():
    assert parse(limit="0").limit is None
    assert parse(limit="-3", offset="2") == ItemQuery(offset=2)
    assert parse(offset="2").offset is None


@pytest.mark.parametrize("name,value", [
    ("newer", "abc"), ("older", "nan"), ("newer", "inf"), ("limit", "2.0"), ("offset", "x"),
    ("index_above", "x"), ("index_below", "nan"), ("limit", "")])
def test_bad_values_are_plain_400s(name, value):
    with pytest.raises(exc.HTTPBadRequest) as caught:
        parse(**{name: value})
    assert name in str(caught.value)


def test_timestamps_accept_scientific_and_negative():
    assert parse(newer="1e3").newer == 100000
    assert parse(older="-5").older == -500


def test_full_means_any_non_empty_value():
    assert wants_full_records(MultiDict(full="1"))
    assert wants_full_records(MultiDict(full="0"))
    assert not wants_full_records(MultiDict(full=""))
    assert not wants_full_records(MultiDict())


def test_values_no_item_can_have_match_nothing():
    assert parse(ids="a,\x00,b," + "x" * 65).ids == ("a", "b")
    assert parse(parentid="bad\x00").ids == ()
    assert parse(predecessorid="é", ids="a").ids == ()
