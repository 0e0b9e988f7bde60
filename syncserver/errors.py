"""Errors shared by every backend family.

A backend that cannot reach what it depends on (a database, a directory)
raises :class:`BackendUnavailable`; the application turns it into a 503 with
``Retry-After`` and a crash id, whichever plugin raised it. A refusal by
policy (:class:`PolicyRefusal`) is never typed as an outage, and an optional
capability a backend lacks raises :class:`NotSupported`.
"""


class ConfigError(Exception):
    """A setting is missing, unknown or has a bad value.

    The message is one sentence that names the key; start-up stops with it.
    """


class BackendUnavailable(Exception):
    """A backend's service (database, directory, cache) did not answer."""

    #: Which service, for metrics and logs: each subclass names its own.
    service = "backend"


class PolicyRefusal(Exception):
    """The server was asked for something its configuration does not allow.

    Never an outage (nothing is down, nothing to retry soon): each subclass
    is answered with the protocol's refusal, not a 503 with a crash id.
    """


class NotSupported(NotImplementedError):
    """An optional capability that this backend does not provide.

    The one convention for optional interface methods: they raise this
    unless a backend implements them, and callers (the admin commands) say
    so in a sentence.
    """
