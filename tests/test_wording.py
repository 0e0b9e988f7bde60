"""Counts in messages for people: no "1 seconds"."""

from syncserver.wording import count_of


def test_count_of_chooses_the_form():
    assert count_of(1, "second") == "1 second"
    assert count_of(0, "second") == "0 seconds"
    assert count_of(2, "batch", "batches") == "2 batches"
    assert count_of(1, "batch", "batches") == "1 batch"
