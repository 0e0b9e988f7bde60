"""The WSGI application: :func:`make_app` builds it, :class:`SyncServerApp` runs requests.

The path of a request: :mod:`syncserver.routing` finds the route, Basic auth
runs when the route needs it, the controller method answers through the
backend interfaces. On a storage node (``nodes.this_node``), storage routes
also pass :class:`~syncserver.web.node_guard.NodeGuard` (downed node, user
assigned elsewhere). Everything a response needs on the way out
(``X-Weave-Timestamp``, ``X-Weave-Backoff``, 503 for a backend that is down,
500 with a crash id for a bug) is added here, once, for every route, and
so are the request metrics when ``metrics.enabled`` is on.
"""

import logging
import time

from webob import Request, exc

from syncserver import metrics, routing
from syncserver.accounts.mail import Mailer
from syncserver.accounts.password_reset import NoThrottle, PasswordReset
from syncserver.accounts.reset_codes import ResetCodeStore
from syncserver.controllers.misc import MiscController
from syncserver.controllers.pages import PagesController
from syncserver.controllers.storage import StorageController
from syncserver.controllers.user import UserController
from syncserver.errors import BackendUnavailable, ConfigError
from syncserver.health import HEARTBEAT_TIMEOUT_SECONDS, SMTP_CHECK_SECONDS, Dependency, Heartbeat
from syncserver.protocol.timestamps import format_timestamp, now_centiseconds
from syncserver.settings import parse_settings
from syncserver.throttle.login import (
    DELETE_ACCOUNT,
    RESET_CODE,
    GuessThrottle,
    LoginThrottle,
    ResetMailLimit,
)
from syncserver.web import proxies
from syncserver.web.access_log import AccessLogMiddleware
from syncserver.web.basic_auth import authenticate_request
from syncserver.web.crashes import crash_response
from syncserver.web.metrics_endpoint import MetricsEndpoint
from syncserver.web.node_guard import NodeGuard
from syncserver.web.request_context import CLIENT_ADDRESS_KEY

logger = logging.getLogger("syncserver")

#: Where :meth:`SyncServerApp.handle` leaves the matched :class:`~syncserver.routing.Route`.
ROUTE_KEY = "syncserver.route"
#: The route label of requests that matched no route (404, 405).
UNMATCHED = "unmatched"


def make_app(global_conf=None, **settings):
    """PasteDeploy app factory (``use = egg:syncserver``): settings are the ``[app:main]`` keys.

    A configuration error or a database that cannot be set up stops the
    server with one sentence instead of a traceback. With
    ``logging.access_log`` on, the app is wrapped in the access log.
    """
    try:
        app = build_app(settings)
    except ConfigError as error:
        raise SystemExit(f"syncserver: configuration error: {error}") from None
    except BackendUnavailable as error:
        raise SystemExit(f"syncserver: cannot start: {error}") from None
    if app.settings.logging.access_log:
        return AccessLogMiddleware(app, app.settings.logging.access_format,
                                   app.settings.global_.trusted_proxies)
    return app


def build_app(settings):
    """Build the application from ``[app:main]`` keys; raises :class:`ConfigError`."""
    parsed = parse_settings(settings)
    storage = parsed.storage.backend.from_settings(parsed.storage)
    auth = parsed.auth.backend.from_settings(parsed.auth)
    nodes = parsed.nodes.backend.from_settings(parsed.nodes) if parsed.nodes.in_use else None
    reset_codes = None
    if parsed.smtp.host:
        reset_codes = ResetCodeStore.from_settings(parsed.reset)
    captcha = parsed.captcha.backend.from_settings(parsed.captcha) if parsed.captcha.use else None
    login_throttle = LoginThrottle.from_settings(parsed.throttle)
    return SyncServerApp(parsed, storage, auth, nodes=nodes, reset_codes=reset_codes,
                         captcha=captcha, login_throttle=login_throttle)


class SyncServerApp:
    """Routes each request to a controller method and finishes its response.

    ``nodes`` (a :class:`~syncserver.nodes.NodeBackend`) is None on a single
    server that hands out no node but its own. ``reset_codes`` (a
    :class:`ResetCodeStore`) turns password reset on; it is None when
    ``smtp.host`` is not set. ``captcha`` is the registration captcha (None
    when ``captcha.use`` is false). ``login_throttle`` (a
    :class:`~syncserver.throttle.login.LoginThrottle`, None when
    ``throttle.enabled`` is false) refuses repeated failed logins, and through
    :class:`~syncserver.throttle.login.GuessThrottle` repeated wrong reset
    codes and delete-account passwords.

    With ``metrics.enabled``, ``metrics`` is the process's
    :class:`~syncserver.metrics.prometheus.PrometheusRecorder` (None otherwise).
    """

    def __init__(self, settings, storage, auth, *, nodes=None, reset_codes=None, captcha=None,
                 login_throttle=None):
        self.settings = settings
        self.storage = storage
        self.auth = auth
        self.nodes = nodes
        self.node_guard = None
        if nodes is not None and settings.nodes.this_node:
            self.node_guard = NodeGuard(
                nodes, settings.nodes.this_node, check_node=settings.auth.check_node,
                cache_seconds=settings.nodes.cache_seconds,
                retry_after=settings.global_.retry_after)
        self.captcha = captcha
        self.throttle = login_throttle
        self.reset_codes = reset_codes
        self.password_reset = None
        mailer = Mailer(settings.smtp) if reset_codes is not None else None
        if reset_codes is not None:
            self.password_reset = PasswordReset(
                auth, reset_codes, mailer, _guesses(login_throttle, RESET_CODE),
                ResetMailLimit(login_throttle.throttle) if login_throttle else None)
        self.heartbeat = Heartbeat(_dependencies(storage, auth, nodes, reset_codes, mailer,
                                                 login_throttle))
        self.metrics = self.metrics_endpoint = None
        if settings.metrics.enabled:
            from syncserver.metrics.prometheus import PrometheusRecorder

            self.metrics = PrometheusRecorder()
            self.metrics_endpoint = MetricsEndpoint(self.metrics, settings.metrics)
            metrics.install(self.metrics)
        self.mapper = routing.build_mapper()
        self.controllers = {
            "storage": StorageController(storage, settings.storage),
            "user": UserController(auth, storage, settings, nodes=nodes,
                                   password_reset=self.password_reset, captcha=captcha,
                                   throttle=login_throttle),
            "pages": PagesController(auth, storage, settings, self.password_reset,
                                     _guesses(login_throttle, DELETE_ACCOUNT)),
            "misc": MiscController(self.heartbeat, captcha=captcha),
        }

    def __call__(self, environ, start_response):
        recorder = self.metrics
        started = time.perf_counter() if recorder is not None else 0.0
        request = Request(environ)
        request.server_time = now_centiseconds()
        environ[CLIENT_ADDRESS_KEY] = proxies.client_address(
            environ, self.settings.global_.trusted_proxies)
        try:
            response = self.handle(request)
        except exc.HTTPException as error:
            response = _plain_error(error, environ)
        except BackendUnavailable as error:
            response = crash_response(
                request, 503, error, retry_after=self.settings.global_.retry_after)
            if recorder is not None:
                recorder.backend_unavailable(error.service)
                recorder.crash(503)
        except Exception as error:
            response = crash_response(request, 500, error)
            if recorder is not None:
                recorder.crash(500)
        if recorder is not None:
            route = environ.get(ROUTE_KEY)
            recorder.request(f"{route.controller}.{route.action}" if route else UNMATCHED,
                             response.status_code, time.perf_counter() - started)
        backoff = getattr(request, "node_backoff", 0)
        if backoff and "X-Weave-Backoff" not in response.headers:
            response.headers["X-Weave-Backoff"] = str(backoff)
        if "X-Weave-Timestamp" not in response.headers:
            response.headers["X-Weave-Timestamp"] = format_timestamp(request.server_time)
        return response(environ, start_response)

    def handle(self, request):
        """Match, authenticate and dispatch; controllers raise WebOb errors freely."""
        try:
            path = request.path_info
        except UnicodeDecodeError:
            raise exc.HTTPNotFound("The path is not valid UTF-8.") from None
        path = path.rstrip("/") or "/"
        if self.metrics_endpoint is not None and path == self.metrics_endpoint.path:
            return self.metrics_endpoint.serve(request)
        route, arguments = routing.match(self.mapper, request.method, path)
        if route is None:
            if arguments:
                raise exc.HTTPMethodNotAllowed(headers={"Allow": ", ".join(arguments)})
            raise exc.HTTPNotFound()
        request.environ[ROUTE_KEY] = route
        guarded = route.controller == "storage" and self.node_guard is not None
        if guarded:
            request.node_backoff = self.node_guard.admit(request)
        if route.needs_auth:
            request.sync_user = authenticate_request(
                request, self.auth, arguments.get("username"), self.throttle)
        if guarded:
            self.node_guard.check_user(request, request.sync_user)
        action = getattr(self.controllers[route.controller], route.action)
        return action(request, **arguments)

    def close(self):
        """Release the backends' connections (tests and clean shutdowns)."""
        if self.metrics is not None:
            metrics.uninstall(self.metrics)
        self.heartbeat.close()
        self.storage.close()
        self.auth.close()
        for optional in (self.nodes, self.reset_codes, self.captcha, self.throttle):
            if optional is not None:
                optional.close()


def _dependencies(storage, auth, nodes, reset_codes, mailer, login_throttle):
    """What the heartbeat checks: every service configured (see :mod:`syncserver.health`)."""
    dependencies = [Dependency("storage", storage.is_healthy)]
    dependencies += [Dependency(name, check, critical=False)
                     for name, check in storage.optional_dependencies().items()]
    dependencies.append(Dependency("auth", auth.is_healthy))
    if nodes is not None:
        dependencies.append(Dependency("nodes", nodes.is_healthy))
    if reset_codes is not None:
        dependencies.append(Dependency("reset_codes", reset_codes.is_healthy, critical=False))
    if mailer is not None:
        dependencies.append(Dependency(
            "smtp", lambda: mailer.is_healthy(timeout=HEARTBEAT_TIMEOUT_SECONDS),
            critical=False, max_age=SMTP_CHECK_SECONDS))
    if login_throttle is not None:
        dependencies.append(Dependency("throttle", login_throttle.is_healthy, critical=False))
    return dependencies


def _guesses(login_throttle, scope):
    """The reset flows' view of one throttle scope; allows everything when throttling is off."""
    return GuessThrottle(login_throttle.throttle, scope) if login_throttle else NoThrottle()


def _plain_error(error, environ):
    """WebOb errors without a body of their own get a plain-text page, whatever Accept says.

    (WebOb would negotiate a JSON object, which clients mistake for a Weave code.)
    """
    if not error.has_body and not error.empty_body:
        text = error.plain_body(environ)
        error.content_type = "text/plain"
        error.charset = "UTF-8"
        error.text = text
    return error
