"""A first sync through ``paster serve`` (the scenario itself is in scenarios.py)."""

import pytest

from .scenarios import first_sync

pytestmark = pytest.mark.e2e


def test_a_first_sync_then_a_second_device_then_a_reset(server):
    first_sync(server.url)
