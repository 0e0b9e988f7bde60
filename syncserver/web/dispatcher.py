"""The WSGI application object: one request through routing, authentication and a controller.

:class:`SyncServerApp` is built by the composition root (:mod:`syncserver.app`)
from ready components. The path of a request: :mod:`syncserver.routing` finds
the route, Basic auth runs when the route needs it, the controller method
answers through the backend interfaces. On a storage node
(``nodes.this_node``), storage routes also pass
:class:`~syncserver.web.node_guard.NodeGuard` (downed node, user assigned
elsewhere). Everything a response needs on the way out
(``X-Weave-Timestamp``, ``X-Weave-Backoff``, 503 for a backend that is down,
500 with a crash id for a bug) is added here, once, for every route, and
so are the request metrics when ``metrics.enabled`` is on. Under the
tokenserver's paths every answer is JSON in its own shape
(:mod:`syncserver.web.tokenserver_http`).
"""

import logging
import time

from webob import exc
from webob.request import BaseRequest

from syncserver import metrics, routing
from syncserver.errors import BackendUnavailable
from syncserver.protocol.timestamps import format_timestamp, now_centiseconds
from syncserver.tokenserver.errors import TokenserverError
from syncserver.web import proxies, tokenserver_http
from syncserver.web.basic_auth import authenticate_request
from syncserver.web.crashes import crash_response
from syncserver.web.request_context import CLIENT_ADDRESS_KEY
from syncserver.web.response_styles import (
    Sync11Style,
    Sync15Style,
    TokenserverStyle,
    is_sync15_path,
)

logger = logging.getLogger("syncserver")

#: Where :meth:`SyncServerApp.handle` leaves the matched :class:`~syncserver.routing.Route`.
ROUTE_KEY = "syncserver.route"
#: The route label of requests that matched no route (404, 405).
UNMATCHED = "unmatched"


class SyncServerApp:
    """Routes each request to a controller method and finishes its response.

    ``components`` (:class:`syncserver.app.Components`) are the backends, kept
    as attributes for tests and tools (``storage``, ``auth``, ``nodes``...,
    None when not configured); ``controllers`` maps the controller names of
    :mod:`syncserver.routing` to their objects. ``node_guard`` is the
    storage-node admission (None unless ``nodes.this_node``), ``heartbeat``
    the :class:`~syncserver.health.Heartbeat`. With ``metrics.enabled``,
    ``metrics`` is the process's
    :class:`~syncserver.metrics.prometheus.PrometheusRecorder` and
    ``metrics_endpoint`` serves it (None otherwise).
    """

    def __init__(self, settings, components, controllers, *, node_guard=None, heartbeat=None,
                 metrics_recorder=None, metrics_endpoint=None, hawk=None, cors=None):
        self.settings = settings
        self.components = components
        self.storage = components.storage
        self.auth = components.auth
        self.nodes = components.nodes
        self.reset_codes = components.reset_codes
        self.captcha = components.captcha
        self.throttle = components.login_throttle
        self.password_reset = components.password_reset
        self.node_guard = node_guard
        self.heartbeat = heartbeat
        self.metrics = metrics_recorder
        self.metrics_endpoint = metrics_endpoint
        #: The Sync 1.5 authenticator (:class:`~syncserver.web.sync15_auth.Sync15Authenticator`);
        #: None when the 1.5 API is off.
        self.hawk = hawk
        self._sync15_style = Sync15Style(cors)
        self._tokenserver_style = TokenserverStyle(settings.global_.retry_after)
        self.mapper = routing.build_mapper()
        self.controllers = controllers

    def __call__(self, environ, start_response):
        recorder = self.metrics
        started = time.perf_counter() if recorder is not None else 0.0
        request = SyncRequest(environ)
        request.server_time = now_centiseconds()
        environ[CLIENT_ADDRESS_KEY] = proxies.client_address(
            environ, self.settings.global_.trusted_proxies)
        style = self._style(environ.get("PATH_INFO", ""))
        try:
            response = self.handle(request)
        except TokenserverError as error:
            response = tokenserver_http.error_response(error)
        except exc.HTTPException as error:
            response = style.http_error(error, environ)
        except BackendUnavailable as error:
            response = style.crash(crash_response(
                request, 503, error, retry_after=self.settings.global_.retry_after))
            if recorder is not None:
                recorder.backend_unavailable(error.service)
                recorder.crash(503)
        except Exception as error:
            response = style.crash(crash_response(request, 500, error))
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
        style.finish(request, response)
        return response(environ, start_response)

    def _style(self, path):
        """The response style of the API family ``path`` belongs to."""
        if tokenserver_http.is_tokenserver_path(path):
            return self._tokenserver_style
        if is_sync15_path(path):
            return self._sync15_style
        return _SYNC11_STYLE

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
        controller = self.controllers.get(route.controller)
        if controller is None:  # not configured here (storage15.enabled = false)
            raise exc.HTTPNotFound()
        guarded = route.controller in _GUARDED and self.node_guard is not None
        if guarded:
            request.node_backoff = self.node_guard.admit(request)
        if route.auth == routing.BASIC:
            request.sync_user = authenticate_request(
                request, self.auth, arguments.get("username"), self.throttle)
            if guarded:
                self.node_guard.check_user(request, request.sync_user)
        elif route.auth == routing.HAWK:
            request.sync15_token = self.hawk.authenticate(request, route, arguments["uid"])
        return getattr(controller, route.action)(request, **arguments)

    def close(self):
        """Release the backends' connections (tests and clean shutdowns)."""
        if self.metrics is not None:
            metrics.uninstall(self.metrics)
        if self.heartbeat is not None:
            self.heartbeat.close()
        self.components.close()


class SyncRequest(BaseRequest):
    """WebOb's request with plain attributes (``request.sync_user`` and the like).

    ``webob.Request`` keeps attributes set on it in the WSGI environ, so that
    another Request made from the same environ sees them; every request of
    this server is made once, here, and that routing of each attribute
    through ``__setattr__``/``__getattr__`` cost about 5% of a
    small request's CPU.
    """


#: Controllers whose routes a downed storage node refuses.
_GUARDED = ("storage", "storage15")


_SYNC11_STYLE = Sync11Style()
