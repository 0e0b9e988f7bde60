"""Errors shared by every backend family.

A backend that cannot reach what it depends on (a database, a directory)
raises :class:`BackendUnavailable`; the application turns it into a 503 with
``Retry-After`` and a crash id, whichever plugin raised it.
"""


class ConfigError(Exception):
    """A setting is missing, unknown or has a bad value.

    The message is one sentence that names the key; start-up stops with it.
    """


class BackendUnavailable(Exception):
    """A backend's service (database, directory, cache) did not answer."""

    #: Which service, for metrics and logs: each subclass names its own.
    service = "backend"
