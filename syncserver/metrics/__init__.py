"""Where the server reports what it counts, without depending on a metrics library.

Code deep in the server (the Redis cache, Basic auth, the throttle) reports
events to :data:`recorder`, a module-level :class:`Recorder` whose methods do
nothing. With ``metrics.enabled`` the application installs a recorder that
counts them (:class:`syncserver.metrics.prometheus.PrometheusRecorder`), so
with metrics off an event costs one empty method call, and no module but
:mod:`syncserver.metrics.prometheus` imports prometheus_client.

Labels are always from small fixed sets (route names, cache fields, reasons),
never from the request (a username in a label would be a new time series per
user, and a leak).
"""


class Recorder:
    """The events the server reports; this base class ignores them all."""

    #: False for the no-op recorder: callers with work to do before reporting skip it.
    enabled = False

    def request(self, route, status, seconds):
        """A request answered by ``route`` (``controller.action``) with ``status``."""

    def crash(self, status):
        """A 500 or 503 answered with a crash id (see :mod:`syncserver.web.crashes`)."""

    def backend_unavailable(self, service):
        """A service (``storage``, ``auth``, ``storage_cache``...) failed to answer."""

    def cache_hit(self, field):
        """An answer (``stamps``, ``counts``, ``meta``...) came from the storage cache."""

    def cache_miss(self, field):
        """An answer the storage cache keeps had to be read from the database."""

    def auth_failure(self, reason):
        """A Basic-auth login was refused (401/400) for ``reason``."""

    def throttle_refusal(self, scope):
        """An attempt was refused by the throttle (429) in ``scope`` (``login-pair``...)."""


NO_METRICS = Recorder()

#: The recorder in use in this process; see :func:`install`.
recorder = NO_METRICS


def install(new_recorder):
    """Make ``new_recorder`` receive this process's events (one application per process)."""
    global recorder
    recorder = new_recorder


def uninstall(old_recorder):
    """Stop reporting to ``old_recorder`` if it is the one installed."""
    global recorder
    if recorder is old_recorder:
        recorder = NO_METRICS
