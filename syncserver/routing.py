"""Every URL the server answers, in one table.

Read it top to bottom: method, path, then ``controller.action`` and how the
route authenticates: :data:`BASIC` (HTTP Basic, Sync 1.1), :data:`HAWK`
(a tokenserver token signed with Hawk, Sync 1.5) or not at all (the
tokenserver checks its Bearer token in its controller). The
dispatcher (:mod:`syncserver.web.dispatcher`) calls
``action(request, **path_arguments)`` on the named controller; a controller
that is not configured (the 1.5 API when ``storage15.enabled`` is false)
answers 404.

Trailing slashes are stripped before matching, so ``/user/1/<u>/`` and
``/user/1/<u>`` are the same route. Collection and item names are matched
loosely here and validated by the controllers, which answer a clear 400 or
404 instead of a bare "no route".
"""

import collections
import re

from routes import Mapper

Route = collections.namedtuple("Route", "method path controller action auth")

#: How a route authenticates.
BASIC = "basic"
HAWK = "hawk"

STORAGE = "/{api:1\\.1|1\\.0|1}/{username}"
USER = "/user/{api:1\\.0|1}/{username}"
STORAGE15 = "/1.5/{uid}"
#: The version starts with a digit, so 1.1's ``/1.0/<user>/storage`` never matches.
TOKEN = "/1.0/{application}/{version}"

ROUTES = (
    # Storage API 1.1 (also served under /1.0/ and /1/).
    Route("GET", STORAGE + "/info/collections", "storage", "get_collection_timestamps", BASIC),
    Route("GET", STORAGE + "/info/collection_counts", "storage", "get_collection_counts", BASIC),
    Route("GET", STORAGE + "/info/collection_usage", "storage", "get_collection_usage", BASIC),
    Route("GET", STORAGE + "/info/quota", "storage", "get_quota", BASIC),
    Route("GET", STORAGE + "/storage/{collection}", "storage", "get_collection", BASIC),
    Route("POST", STORAGE + "/storage/{collection}", "storage", "post_collection", BASIC),
    Route("PUT", STORAGE + "/storage/{collection}", "storage", "post_collection", BASIC),
    Route("DELETE", STORAGE + "/storage/{collection}", "storage", "delete_collection", BASIC),
    Route("GET", STORAGE + "/storage/{collection}/{item}", "storage", "get_item", BASIC),
    Route("PUT", STORAGE + "/storage/{collection}/{item}", "storage", "put_item", BASIC),
    Route("DELETE", STORAGE + "/storage/{collection}/{item}", "storage", "delete_item", BASIC),
    Route("DELETE", STORAGE + "/storage", "storage", "delete_storage", BASIC),
    # Storage API 1.5 (current Firefox; ``storage15.enabled``).
    Route("GET", STORAGE15 + "/info/collections", "storage15", "get_collection_timestamps", HAWK),
    Route("GET", STORAGE15 + "/info/collection_counts", "storage15", "get_collection_counts",
          HAWK),
    Route("GET", STORAGE15 + "/info/collection_usage", "storage15", "get_collection_usage",
          HAWK),
    Route("GET", STORAGE15 + "/info/quota", "storage15", "get_quota", HAWK),
    Route("GET", STORAGE15 + "/info/configuration", "storage15", "get_configuration", HAWK),
    Route("DELETE", STORAGE15, "storage15", "delete_storage", HAWK),
    Route("DELETE", STORAGE15 + "/storage", "storage15", "delete_storage", HAWK),
    Route("GET", STORAGE15 + "/storage/{collection}", "storage15", "get_collection", HAWK),
    Route("POST", STORAGE15 + "/storage/{collection}", "storage15", "post_collection", HAWK),
    Route("DELETE", STORAGE15 + "/storage/{collection}", "storage15", "delete_collection", HAWK),
    Route("GET", STORAGE15 + "/storage/{collection}/{item}", "storage15", "get_item", HAWK),
    Route("PUT", STORAGE15 + "/storage/{collection}/{item}", "storage15", "put_item", HAWK),
    Route("DELETE", STORAGE15 + "/storage/{collection}/{item}", "storage15", "delete_item",
          HAWK),
    # CORS preflight of any 1.5 path, answered without authentication.
    Route("OPTIONS", "/1.5/{anything:.*}", "storage15", "preflight", None),
    # Tokenserver 1.0 (current Firefox's sign-in; ``tokenserver.enabled``): only
    # sync/1.5 is served, other applications and versions get the protocol's 404.
    # The controller verifies the Bearer token itself.
    Route("GET", TOKEN, "tokenserver", "get_token", None),
    Route("GET", "/token" + TOKEN, "tokenserver", "get_token", None),
    # User API 1.0 (also served under /user/1/).
    Route("GET", USER, "user", "user_exists", None),
    Route("PUT", USER, "user", "create_user", None),
    Route("DELETE", USER, "user", "delete_user", BASIC),
    Route("GET", USER + "/node/weave", "user", "get_node", None),
    Route("POST", USER + "/password", "user", "change_password", None),  # Basic auth inside
    Route("POST", USER + "/email", "user", "change_email", BASIC),
    Route("GET", USER + "/password_reset", "user", "request_password_reset", None),
    Route("DELETE", USER + "/password_reset", "user", "cancel_password_reset", BASIC),
    # HTML pages for people (no Basic auth: the forms carry the credentials).
    Route("GET", "/weave-password-reset", "pages", "password_reset_page", None),
    Route("POST", "/weave-password-reset", "pages", "password_reset_submit", None),
    Route("GET", "/weave-delete-account", "pages", "delete_account_page", None),
    Route("POST", "/weave-delete-account", "pages", "delete_account_submit", None),
    # The captcha widget the Firefox setup wizard embeds (404 when captcha.use is false).
    Route("GET", "/misc/{api:1\\.0|1}/captcha_html", "misc", "captcha_html", None),
    Route("POST", "/misc/{api:1\\.0|1}/captcha_html", "misc", "captcha_html", None),
    # Operations.
    Route("GET", "/__heartbeat__", "misc", "heartbeat", None),
    Route("HEAD", "/__heartbeat__", "misc", "heartbeat", None),
)

REQUIREMENTS = {
    "username": r"[a-zA-Z0-9._-]+",
    "uid": r"[0-9]{1,10}",
    "collection": r"[^/]+",
    "item": r"[^/]+",
    "application": r"[^/]+",
    "version": r"[0-9][^/]*",
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


#: The Sync 1.1 requests every sync makes (info/collections, a collection, an item),
#: recognised without Routes, which costs more than the rest of a small request's
#: routing and authentication together. Anything unusual (a ``%``, another shape)
#: goes to Routes; tests/test_routing.py checks both agree.
_HOT_PATH = re.compile(r"/(?:1\.1|1\.0|1)/(?P<username>[a-zA-Z0-9._-]+)/"
                       r"(?:(?P<info>info/collections)|storage/(?P<collection>[^/%]+)"
                       r"(?:/(?P<item>[^/%]+))?)")
_HOT_ROUTES = {
    (route.method, shape): route for route in ROUTES for shape, suffix in (
        ("info", "/info/collections"), ("collection", "/storage/{collection}"),
        ("item", "/storage/{collection}/{item}"))
    if route.path == STORAGE + suffix
}


def _hot_match(method, path):
    found = _HOT_PATH.fullmatch(path)
    if found is None:
        return None
    username, info, collection, item = found.group("username", "info", "collection", "item")
    if info is not None:
        route = _HOT_ROUTES.get((method, "info"))
        return (route, {"username": username}) if route is not None else None
    if item is None:
        route = _HOT_ROUTES.get((method, "collection"))
        arguments = {"username": username, "collection": collection}
    else:
        route = _HOT_ROUTES.get((method, "item"))
        arguments = {"username": username, "collection": collection, "item": item}
    return (route, arguments) if route is not None else None


def match(mapper, method, path):
    """Return ``(Route, path_arguments)``, or ``(None, allowed_methods)`` when nothing matches.

    ``allowed_methods`` lists the methods that would match ``path`` (empty
    for an unknown path, which is a 404; otherwise a 405).
    """
    hot = _hot_match(method, path)
    if hot is not None:
        return hot
    return match_routes(mapper, method, path)


def match_routes(mapper, method, path):
    """:func:`match` through Routes alone (what the hot path must agree with)."""
    found = mapper.routematch(path, {"REQUEST_METHOD": method})
    if found is not None:
        arguments, mapped = found
        route = ROUTES[int(mapped.name)]
        arguments = {key: value for key, value in arguments.items()
                     if key not in ("controller", "action", "api", "anything")}
        return route, arguments
    allowed = [other for other in METHODS
               if other != method and mapper.routematch(path, {"REQUEST_METHOD": other})]
    if allowed == ["OPTIONS"]:
        return None, []  # only the catch-all preflight: the path itself is unknown (404)
    return None, allowed
