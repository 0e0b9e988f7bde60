"""Controllers: one class per API, one method per route of :mod:`syncserver.routing`."""
