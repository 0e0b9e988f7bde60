"""The heartbeat: is every service this server depends on answering, and how fast?

``/__heartbeat__`` runs one check per configured dependency (the storage
database, the Redis cache, the accounts, the node list, the reset codes, the
mail server, the login-failure counters), all at once in a small thread pool,
and waits for them at most :data:`HEARTBEAT_TIMEOUT_SECONDS`. Each answers
``ok`` or ``unavailable`` with the milliseconds it took.

What the overall answer means:

- ``ok`` (200): everything answers.
- ``degraded`` (200): something a sync can do without is down (the Redis
  cache: requests are answered from the database; the throttle store: logins
  are not throttled; the reset-code database or the mail server: password
  reset is off). A load balancer must keep sending traffic here.
- ``unavailable`` (503): a *critical* dependency is down (the storage
  database, the accounts, the node list when one is used): syncs fail.

A monitor may poll every second from several places, so checks are cheap
(one trivial query each) and never pile up: a check still running from an
earlier request (a database that hangs) is waited for, not started again.
Checks that cost the other side more (an SMTP connection) keep their answer
for ``max_age`` seconds. A dependency that goes down or comes back is logged
once, on the change, not on every poll.
"""

import concurrent.futures
import dataclasses
import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("syncserver.health")

#: The longest a heartbeat waits for its checks; a slower one counts as unavailable.
HEARTBEAT_TIMEOUT_SECONDS = 3.0
#: How long the mail server's answer is reused (a connection, EHLO, NOOP and QUIT).
SMTP_CHECK_SECONDS = 60.0

OK, DEGRADED, UNAVAILABLE = "ok", "degraded", "unavailable"


@dataclasses.dataclass(frozen=True)
class Dependency:
    """A service to check: ``check()`` returns True when it answers a real request.

    ``critical``: syncs fail without it (503 when down). ``max_age``: seconds
    an answer is reused before the service is asked again.
    """

    name: str
    check: Callable[[], bool]
    critical: bool = True
    max_age: float = 0.0


@dataclasses.dataclass(frozen=True)
class _Result:
    healthy: bool
    latency_ms: float
    checked_at: float


class Heartbeat:
    """Runs the checks of ``dependencies`` in parallel; :meth:`report` gives the answer.

    Thread-safe: one instance serves every request thread of a process.
    ``clock`` (monotonic seconds) is for tests.
    """

    def __init__(self, dependencies, timeout=HEARTBEAT_TIMEOUT_SECONDS, clock=time.monotonic):
        self.dependencies = tuple(dependencies)
        self.timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._running = {}
        self._results = {}
        # Threads start on first use (after a pre-forking server has forked).
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, len(self.dependencies)), thread_name_prefix="heartbeat")

    def report(self):
        """``(http_status, body)``: 200 or 503, and the JSON-ready report described above."""
        started = self._clock()
        pending = {}
        answers = {}
        with self._lock:
            for dependency in self.dependencies:
                result = self._results.get(dependency.name)
                if (result is not None and dependency.max_age
                        and started - result.checked_at < dependency.max_age):
                    answers[dependency.name] = result
                    continue
                future = self._running.get(dependency.name)
                if future is None or future.done():
                    future = self._executor.submit(self._run, dependency)
                    self._running[dependency.name] = future
                pending[dependency.name] = future
        concurrent.futures.wait(pending.values(), timeout=self.timeout)
        waited_ms = (self._clock() - started) * 1000.0
        for name, future in pending.items():
            answers[name] = future.result() if future.done() else _Result(
                False, waited_ms, started)
        checks = {}
        status = OK
        for dependency in self.dependencies:
            result = answers[dependency.name]
            checks[dependency.name] = {
                "status": OK if result.healthy else UNAVAILABLE,
                "latency_ms": round(result.latency_ms, 1),
                "critical": dependency.critical,
            }
            if not result.healthy:
                status = UNAVAILABLE if dependency.critical or status == UNAVAILABLE else DEGRADED
        return (503 if status == UNAVAILABLE else 200), {"status": status, "checks": checks}

    def _run(self, dependency):
        started = self._clock()
        try:
            healthy = bool(dependency.check())
        except Exception:
            logger.exception("Heartbeat: the check of %s failed", dependency.name)
            healthy = False
        result = _Result(healthy, (self._clock() - started) * 1000.0, started)
        with self._lock:
            previous = self._results.get(dependency.name)
            self._results[dependency.name] = result
        changed = not healthy if previous is None else previous.healthy != healthy
        if changed:
            if healthy:
                logger.info("Heartbeat: %s answers again", dependency.name)
            else:
                logger.warning("Heartbeat: %s is unavailable%s", dependency.name,
                               "" if dependency.critical else " (not needed to serve syncs)")
        return result

    def close(self):
        """Stop the check threads; a check still waiting on a service is not waited for."""
        self._executor.shutdown(wait=False, cancel_futures=True)
