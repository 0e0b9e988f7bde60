"""Test kits for plugin authors."""

try:
    import pytest
except ImportError:  # pragma: no cover - the kits are only useful under pytest
    pass
else:
    # Plain asserts in the kits then report values, as in the author's own tests.
    pytest.register_assert_rewrite("syncserver.testing.storage_conformance",
                                   "syncserver.testing.storage_quota_stream",
                                   "syncserver.testing.storage_sync15",
                                   "syncserver.testing.storage_batches",
                                   "syncserver.testing.auth_conformance")
