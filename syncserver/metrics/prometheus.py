"""Counting the server's events with prometheus_client (``metrics.enabled = true``).

Every metric is prefixed ``syncserver_``; docs/monitoring.rst lists them.
Each :class:`PrometheusRecorder` has its own registry, so several
applications in one process (tests) never clash.

Several worker processes (gunicorn ``-w``, mod_wsgi ``processes=``) each
count their own requests; a scrape reaches one of them. With the
``PROMETHEUS_MULTIPROC_DIR`` environment variable set (an empty folder,
writable by the workers, emptied before each start of the server),
prometheus_client keeps the values in files there, and a scrape adds up the
files of every process through ``MultiProcessCollector``.
"""

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from syncserver.metrics import Recorder

#: Request durations in seconds: a sync request takes milliseconds; a batch upload can take seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class PrometheusRecorder(Recorder):
    """A :class:`~syncserver.metrics.Recorder` that counts into Prometheus metrics."""

    enabled = True

    def __init__(self):
        registry = self.registry = CollectorRegistry()
        self._requests = Counter(
            "syncserver_requests", "Requests answered, by route (controller.action) and status.",
            ["route", "status"], registry=registry)
        self._durations = Histogram(
            "syncserver_request_duration_seconds",
            "Time from receiving a request to its response, by route.",
            ["route"], buckets=DURATION_BUCKETS, registry=registry)
        self._crashes = Counter(
            "syncserver_crashes", "500 and 503 answers logged with a crash id, by status.",
            ["status"], registry=registry)
        self._unavailable = Counter(
            "syncserver_backend_unavailable",
            "Failures to reach a service (database, directory, cache, mail), by service.",
            ["service"], registry=registry)
        self._cache_hits = Counter(
            "syncserver_storage_cache_hits", "Answers served from the Redis cache, by field.",
            ["field"], registry=registry)
        self._cache_misses = Counter(
            "syncserver_storage_cache_misses",
            "Cacheable answers read from the database instead, by field.",
            ["field"], registry=registry)
        self._auth_failures = Counter(
            "syncserver_auth_failures", "Refused Basic-auth logins, by reason.",
            ["reason"], registry=registry)
        self._throttle_refusals = Counter(
            "syncserver_throttle_refusals", "Attempts refused by the throttle (429), by scope.",
            ["scope"], registry=registry)
        #: (route, status) -> (request counter, duration histogram): one lookup per request.
        self._request_children = {}

    def request(self, route, status, seconds):
        children = self._request_children.get((route, status))
        if children is None:
            children = self._request_children.setdefault((route, status), (
                self._requests.labels(route, str(status)), self._durations.labels(route)))
        children[0].inc()
        children[1].observe(seconds)

    def crash(self, status):
        self._crashes.labels(str(status)).inc()

    def backend_unavailable(self, service):
        self._unavailable.labels(service).inc()

    def cache_hit(self, field):
        self._cache_hits.labels(field).inc()

    def cache_miss(self, field):
        self._cache_misses.labels(field).inc()

    def auth_failure(self, reason):
        self._auth_failures.labels(reason).inc()

    def throttle_refusal(self, scope):
        self._throttle_refusals.labels(scope).inc()

    def exposition(self):
        """The text a Prometheus scrape reads: this process's metrics, or every process's."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
