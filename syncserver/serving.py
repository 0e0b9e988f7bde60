"""The server ``paster serve`` runs: waitress, with a taken port said in one sentence.

``[server:main] use = egg:syncserver#waitress`` takes waitress's own options
(``host``, ``port``, ``threads``, ``max_request_body_size``...). The only
difference from ``egg:waitress#main``: before the application is loaded, it
checks that the address can be listened on, and if not (another server on
the port, a port below 1024 without root, an address this machine does not
have) stops ``paster serve`` with one sentence and exit status 1 instead of
a traceback. Written here because neither paster nor waitress offers it.

It also keeps waitress from deleting ``X-Forwarded-*`` headers: waitress
(``clear_untrusted_proxy_headers``, on by default) drops them from every
peer unless its own ``trusted_proxy`` is set, so ``global.trusted_proxies``
would never see a proxy's headers. The application decides whom to believe;
an ini that sets waitress's ``trusted_proxy`` or the option itself keeps
waitress's behaviour.

``host`` and ``port`` given on the command line (``paster serve
development.ini port=5001``) win over the ini's: PasteDeploy then drops the
ini's own value of that name from the section and hands the command line's
over in ``global_conf`` only, so without this factory waitress would fall
back to its default port, 8080.

``cpu_affinity`` (an option of the section, off by default: a list of CPU
numbers and ranges, ``0`` or ``0,2-3``) keeps the server's process, and so
every thread waitress starts, on those CPUs. waitress runs the application
in threads of one process, which take turns on one interpreter lock: on a
machine with several CPUs, each time the lock passes from a thread on one
CPU to a thread on another the interpreter's state follows it between the
CPUs' caches, which can double what a request costs when many are served at
once. On one CPU that stops (see docs/performance.rst for what it changes);
the price is that work done outside the lock (SQLite, the socket calls)
no longer runs beside the interpreter. Linux only.

And it lets waitress's "Task queue depth is N" warning through once per
``queue_warning_seconds`` (an option of the section, default 10; 0 lets
every one through), with how many it held back. waitress logs one for every
request that finds all its threads busy, from its only I/O thread and
while holding the lock its threads take work under: during a sync burst
that was a line per request on the console, and about a tenth of the
server's time. The warnings held back are counted before any log record is
made (a filter on the logger would see each one only after the record was
built: measured under 16 clients writing, that was still 15% of the I/O
thread's time, and the I/O thread is half of what holds the interpreter).
"""

import errno
import logging
import os
import socket
import threading
import time

#: errno -> what it means for a server that wants to listen.
_LISTEN_PROBLEMS = {
    errno.EADDRINUSE: "the port is in use (is another server running?)",
    errno.EACCES: "permission denied (ports below 1024 need root)",
    errno.EADDRNOTAVAIL: "this machine has no such address",
}


#: Default of ``queue_warning_seconds``.
QUEUE_WARNING_SECONDS = 10.0


def waitress_server(global_conf, **options):
    """``paste.server_factory``: check the listening address now; return the runner."""
    try:
        queue_warning_seconds = float(options.pop("queue_warning_seconds", QUEUE_WARNING_SECONDS))
    except ValueError:
        raise SystemExit("syncserver: [server:main] is not usable: queue_warning_seconds must "
                         "be a number of seconds") from None
    cpus = parse_cpu_affinity(options.pop("cpu_affinity", ""))
    if "listen" not in options:
        for name in ("host", "port"):
            if name not in options and global_conf.get(name):
                options[name] = global_conf[name]
    if "trusted_proxy" not in options:
        options.setdefault("clear_untrusted_proxy_headers", "false")
    check_listen(options, global_conf.get("__file__"))

    def serve(app):
        import waitress

        if cpus:
            # Before waitress starts its threads: they inherit it.
            os.sched_setaffinity(0, cpus)
        # What waitress.serve() does, with the dispatcher's queue logger replaced between.
        logging.basicConfig()  # does nothing where the ini configured logging
        server = waitress.create_server(app, **options)
        if queue_warning_seconds > 0:
            dispatcher = server.task_dispatcher
            dispatcher.queue_logger = OncePerInterval(dispatcher.queue_logger,
                                                      queue_warning_seconds)
        server.print_listen("Serving on http://{}:{}")
        server.run()

    return serve


def parse_cpu_affinity(value):
    """The set of CPUs in ``cpu_affinity`` (empty: leave the process where it is).

    Raises :class:`SystemExit` with a sentence for a value that is not a list
    of CPUs this process may run on, or where the system cannot pin a process.
    """
    value = value.strip()
    if not value:
        return set()
    problem = "[server:main] is not usable: cpu_affinity"
    cpus = set()
    try:
        for part in value.split(","):
            first, _, last = part.strip().partition("-")
            first, last = int(first), int(last or first)
            if first < 0 or last < first:
                raise ValueError(part)
            cpus.update(range(first, last + 1))
    except ValueError:
        raise SystemExit(f"syncserver: {problem} must be CPU numbers and ranges such as "
                         f"0 or 0,2-3, not {value!r}") from None
    if not hasattr(os, "sched_setaffinity"):
        raise SystemExit(f"syncserver: {problem} works on Linux only; remove it")
    allowed = os.sched_getaffinity(0)
    if not cpus <= allowed:
        raise SystemExit(f"syncserver: {problem} names CPUs this process may not use: "
                         f"{', '.join(map(str, sorted(cpus - allowed)))} (it may use "
                         f"{', '.join(map(str, sorted(allowed)))})")
    return cpus


def check_listen(options, ini=None):
    """Raise :class:`SystemExit` with a sentence unless every address in ``options`` is free."""
    from waitress.adjustments import Adjustments

    if "unix_socket" in options or "sockets" in options:
        return
    try:
        adjustments = Adjustments(**options)
    except (TypeError, ValueError) as error:
        raise SystemExit(f"syncserver: [server:main] is not usable: {error}") from None
    for family, socktype, proto, address in adjustments.listen:
        probe = socket.socket(family, socktype, proto)
        try:
            # As waitress will: a closed connection's TIME_WAIT does not block the port.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind(address)
        except OSError as error:
            raise SystemExit(_sentence(family, address, error, ini)) from None
        finally:
            probe.close()


def _sentence(family, address, error, ini):
    host, port = address[0], address[1]
    shown = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
    problem = _LISTEN_PROBLEMS.get(error.errno, error.strerror or str(error))
    hint = (f"; choose another port: paster serve {ini} port=NUMBER"
            if ini and error.errno == errno.EADDRINUSE else "")
    return f"syncserver: cannot listen on {shown}: {problem}{hint}"


class OncePerInterval:
    """Stands in for a logger: one ``warning`` per ``seconds`` reaches it, the next says how
    many were held back; those held back cost a clock reading and a counter."""

    def __init__(self, logger, seconds, clock=time.monotonic):
        self.logger = logger
        self.seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._next = None
        self._held = 0

    def warning(self, message, *args):
        now = self._clock()
        with self._lock:
            if self._next is not None and now < self._next:
                self._held += 1
                return
            held, self._held = self._held, 0
            self._next = now + self.seconds
        if held:
            message = f"{message} ({held} more since the last one logged)"
        self.logger.warning(message, *args)
