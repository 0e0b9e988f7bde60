"""Every URL the server answers, in one table.

Read it top to bottom: method, path, then ``controller.action`` and whether
the route needs HTTP Basic auth. The dispatcher in :mod:`syncserver.app`
calls ``action(request, **path_arguments)`` on the named controller.

Trailing slashes are stripped before matching, so ``/user/1/<u>/`` and
``/user/1/<u>`` are the same route. Collection and item names are matched
loosely here and validated by the controllers, which answer a clear 400 or
404 instead of a bare "no route".
"""

import collections

from routes import Mapper

Route = collections.namedtuple("Route", "method path controller action needs_auth")

STORAGE = "/{api:1\\.1|1\\.0|1}/{username}"
USER = "/user/{api:1\\.0|1}/{username}"

ROUTES = (
    # Storage API 1.1 (also served under /1.0/ and /1/).
    Route("GET", STORAGE + "/info/collections", "storage", "get_collection_timestamps", True),
    Route("GET", STORAGE + "/info/collection_counts", "storage", "get_collection_counts", True),
    Route("GET", STORAGE + "/info/collection_usage", "storage", "get_collection_usage", True),
    Route("GET", STORAGE + "/info/quota", "storage", "get_quota", True),
    Route("GET", STORAGE + "/storage/{collection}", "storage", "get_collection", True),
    Route("POST", STORAGE + "/storage/{collection}", "storage", "post_collection", True),
    Route("PUT", STORAGE + "/storage/{collection}", "storage", "post_collection", True),
    Route("DELETE", STORAGE + "/storage/{collection}", "storage", "delete_collection", True),
    Route("GET", STORAGE + "/storage/{collection}/{item}", "storage", "get_item", True),
    Route("PUT", STORAGE + "/storage/{collection}/{item}", "storage", "put_item", True),
    Route("DELETE", STORAGE + "/storage/{collection}/{item}", "storage", "delete_item", True),
    Route("DELETE", STORAGE + "/storage", "storage", "delete_storage", True),
    # User API 1.0 (also served under /user/1/).
    Route("GET", USER, "user", "user_exists", False),
    Route("PUT", USER, "user", "create_user", False),
    Route("DELETE", USER, "user", "delete_user", True),
    Route("GET", USER + "/node/weave", "user", "get_node", False),
    Route("POST", USER + "/password", "user", "change_password", False),  # auth checked inside
    Route("POST", USER + "/email", "user", "change_email", True),
    Route("GET", USER + "/password_reset", "user", "request_password_reset", False),
    Route("DELETE", USER + "/password_reset", "user", "cancel_password_reset", True),
    # HTML pages for people (no Basic auth: the forms carry the credentials).
    Route("GET", "/weave-password-reset", "pages", "password_reset_page", False),
    Route("POST", "/weave-password-reset", "pages", "password_reset_submit", False),
    Route("GET", "/weave-delete-account", "pages", "delete_account_page", False),
    Route("POST", "/weave-delete-account", "pages", "delete_account_submit", False),
    # The captcha widget the Firefox setup wizard embeds (404 when captcha.use is false).
    Route("GET", "/misc/{api:1\\.0|1}/captcha_html", "misc", "captcha_html", False),
    Route("POST", "/misc/{api:1\\.0|1}/captcha_html", "misc", "captcha_html", False),
    # Operations.
    Route("GET", "/__heartbeat__", "misc", "heartbeat", False),
    Route("HEAD", "/__heartbeat__", "misc", "heartbeat", False),
)

REQUIREMENTS = {
    "username": r"[a-zA-Z0-9._-]+",
    "collection": r"[^/]+",
    "item": r"[^/]+",
}

METHODS = sorted({route.method for route in ROUTES})


def build_mapper():
    """A Routes mapper holding :data:`ROUTES`; each route's name is its index."""
    mapper = Mapper(explicit=True)
    mapper.minimization = False
    for index, route in enumerate(ROUTES):
        mapper.connect(str(index), route.path, controller=route.controller,
                       action=route.action, requirements=dict(REQUIREMENTS),
                       conditions={"method": [route.method]})
    return mapper


def match(mapper, method, path):
    """Return ``(Route, path_arguments)``, or ``(None, allowed_methods)`` when nothing matches.

    ``allowed_methods`` lists the methods that would match ``path`` (empty
    for an unknown path, which is a 404; otherwise a 405).
    """
    found = mapper.routematch(path, {"REQUEST_METHOD": method})
    if found is not None:
        arguments, mapped = found
        route = ROUTES[int(mapped.name)]
        arguments = {key: value for key, value in arguments.items()
                     if key not in ("controller", "action", "api")}
        return route, arguments
    allowed = [other for other in METHODS
               if other != method and mapper.routematch(path, {"REQUEST_METHOD": other})]
    return None, allowed
