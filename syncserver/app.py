"""The WSGI application: :func:`make_app` builds it, :class:`SyncServerApp` runs requests.

The path of a request: :mod:`syncserver.routing` finds the route, Basic auth
runs when the route needs it, the controller method answers through the
backend interfaces. Everything a response needs on the way out
(``X-Weave-Timestamp``, 503 for a backend that is down, 500 with a crash id
for a bug) is added here, once, for every route.
"""

import logging

from webob import Request, exc

from syncserver import proxies, routing
from syncserver.accesslog import AccessLogMiddleware
from syncserver.auth.basic import CLIENT_ADDRESS_KEY, authenticate_request
from syncserver.controllers.misc import MiscController
from syncserver.controllers.storage import StorageController
from syncserver.controllers.user import UserController
from syncserver.crashes import crash_response
from syncserver.errors import BackendUnavailable, ConfigError
from syncserver.protocol.timestamps import format_timestamp, now_centiseconds
from syncserver.settings import parse_settings

logger = logging.getLogger("syncserver")


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
    return SyncServerApp(parsed, storage, auth)


class SyncServerApp:
    """Routes each request to a controller method and finishes its response."""

    def __init__(self, settings, storage, auth):
        self.settings = settings
        self.storage = storage
        self.auth = auth
        self.mapper = routing.build_mapper()
        self.controllers = {
            "storage": StorageController(storage, settings.storage),
            "user": UserController(auth, storage, settings),
            "misc": MiscController(storage, auth),
        }

    def __call__(self, environ, start_response):
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
        except Exception as error:
            response = crash_response(request, 500, error)
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
        route, arguments = routing.match(self.mapper, request.method, path)
        if route is None:
            if arguments:
                raise exc.HTTPMethodNotAllowed(headers={"Allow": ", ".join(arguments)})
            raise exc.HTTPNotFound()
        if route.needs_auth:
            request.sync_user = authenticate_request(request, self.auth, arguments.get("username"))
        action = getattr(self.controllers[route.controller], route.action)
        return action(request, **arguments)

    def close(self):
        """Release the backends' connections (tests and clean shutdowns)."""
        self.storage.close()
        self.auth.close()


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
