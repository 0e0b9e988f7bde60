"""The request-target a client signed: raw URIs, rebuilt paths, mount and proxy prefixes."""

import pytest
import webob

from syncserver.web.request_target import (
    PublicURL,
    normalize_base_url,
    same_base_url,
    signed_request_target,
)

ROOT = "https://sync.example.com"
PREFIXED = "https://sync.example.com/sync"

# Record ids as desktop Firefox puts them in URLs (encodeURIComponent).
ENCODED_PATHS = [
    "/1.5/42/storage/bookmarks/%7B2a5f9e4c-0000-4000-8000-0123456789ab%7D",
    "/1.5/42/storage/tabs/abc%3D%3D",
    "/1.5/42/storage/forms/with%20space",
    "/1.5/42/storage/history/tilde~id",
    "/1.5/42/storage/history/%C3%A9t%C3%A9",
    "/1.5/42/storage/bookmarks?ids=%7Ba%7D%2C%7Bb%7D&batch=MTIz%3D&commit=true",
]


def environ_for(path, mode, script_name=""):
    """What a WSGI server gives the app for ``path`` (below ``script_name``).

    ``mode``: "REQUEST_URI" (mod_wsgi, uWSGI, waitress 3), "RAW_URI"
    (gunicorn) or None (a server with neither).
    """
    request = webob.Request.blank(path)
    environ = request.environ
    environ["SCRIPT_NAME"] = script_name
    if mode:
        environ[mode] = script_name + path
    return environ


@pytest.mark.parametrize("mode", ["REQUEST_URI", "RAW_URI", None])
@pytest.mark.parametrize("path", ENCODED_PATHS)
def test_root_gives_the_path_as_sent(path, mode):
    assert signed_request_target(environ_for(path, mode), ROOT) == path


@pytest.mark.parametrize("mode", ["REQUEST_URI", "RAW_URI", None])
@pytest.mark.parametrize("path", ENCODED_PATHS)
def test_script_name_prefix_is_part_of_what_was_signed(path, mode):
    environ = environ_for(path, mode, script_name="/sync")
    assert signed_request_target(environ, PREFIXED) == "/sync" + path


@pytest.mark.parametrize("mode", ["REQUEST_URI", "RAW_URI", None])
@pytest.mark.parametrize("path", ENCODED_PATHS)
def test_prefix_stripped_by_a_proxy_comes_from_the_public_url(path, mode):
    assert signed_request_target(environ_for(path, mode), PREFIXED) == "/sync" + path


def test_proxy_prefix_and_mount_prefix_together():
    # Client URL https://host/outer/inner/...; the proxy strips /outer, Apache mounts /inner.
    environ = environ_for(ENCODED_PATHS[0], "REQUEST_URI", script_name="/inner")
    target = signed_request_target(environ, "https://sync.example.com/outer/inner")
    assert target == "/outer/inner" + ENCODED_PATHS[0]


def test_webob_path_qs_would_not_do():
    """Why the raw target matters: WebOb re-encodes ids its own way ("=" left bare)."""
    path = "/1.5/42/storage/tabs/abc%3D%3D"
    request = webob.Request.blank(path)
    assert request.path_qs == "/1.5/42/storage/tabs/abc=="


def test_raw_uri_keeps_what_a_rebuild_cannot():
    # The Rust client leaves "=" as is in a path; desktop would send %3D.
    path = "/1.5/42/storage/tabs/abc=="
    assert signed_request_target(environ_for(path, "REQUEST_URI"), ROOT) == path
    assert signed_request_target(environ_for(path, None), ROOT) == "/1.5/42/storage/tabs/abc%3D%3D"


def test_absolute_form_request_target():
    environ = environ_for("/1.5/42/info/collections", None)
    environ["REQUEST_URI"] = "https://sync.example.com/1.5/42/info/collections?a=1"
    assert signed_request_target(environ, ROOT) == "/1.5/42/info/collections?a=1"


def test_raw_target_the_server_rewrote_falls_back_to_path_info():
    environ = environ_for("/1.5/42/info/collections", None, script_name="/sync")
    environ["REQUEST_URI"] = "/elsewhere/1.5/42/info/collections"
    assert signed_request_target(environ, PREFIXED) == "/sync/1.5/42/info/collections"


def test_request_uri_wins_over_raw_uri():
    environ = environ_for("/1.5/42/a%7Bb", "REQUEST_URI")
    environ["RAW_URI"] = "/something/else"
    assert signed_request_target(environ, ROOT) == "/1.5/42/a%7Bb"


def test_mount_prefix_that_needs_encoding():
    environ = webob.Request.blank("/1.5/42/x").environ
    environ["SCRIPT_NAME"] = "/my sync"
    environ["REQUEST_URI"] = "/my%20sync/1.5/42/x%7B"
    environ["PATH_INFO"] = "/1.5/42/x{"
    assert signed_request_target(environ, "https://h.example/my%20sync") == "/my%20sync/1.5/42/x%7B"


def test_empty_query_is_kept_when_raw():
    assert signed_request_target(environ_for("/1.5/42/x?", "RAW_URI"), ROOT) == "/1.5/42/x?"


# -- public URLs ----------------------------------------------------------------------

@pytest.mark.parametrize("url,base,host,port,prefix", [
    ("https://sync.example.com", ROOT, "sync.example.com", 443, ""),
    ("HTTPS://Sync.Example.COM:443/", ROOT, "sync.example.com", 443, ""),
    ("http://sync.example.com:80", "http://sync.example.com", "sync.example.com", 80, ""),
    ("http://sync.example.com:8080/sync/", "http://sync.example.com:8080/sync",
     "sync.example.com", 8080, "/sync"),
    ("https://sync.example.com:80/Sync", "https://sync.example.com:80/Sync",
     "sync.example.com", 80, "/Sync"),
    ("https://[::1]:8443/s", "https://[::1]:8443/s", "::1", 8443, "/s"),
])
def test_public_url_parsing_and_normalizing(url, base, host, port, prefix):
    public = PublicURL.parse(url)
    assert (public.base, public.host, public.port, public.prefix) == (base, host, port, prefix)
    assert normalize_base_url(url) == base


@pytest.mark.parametrize("url", [
    "sync.example.com", "ftp://sync.example.com", "https://", "https://h:99999",
    "https://h:port", "https://user:pw@h", "https://h/?q=1", "https://h/#f", "", None, 42,
])
def test_bad_public_urls(url):
    with pytest.raises(ValueError):
        PublicURL.parse(url)


def test_same_base_url():
    assert same_base_url("https://Sync.example.com:443/", ROOT)
    assert not same_base_url("https://sync.example.com:8443", ROOT)
    assert not same_base_url("http://sync.example.com", ROOT)
    assert not same_base_url("https://sync.example.com/sync", ROOT)
    assert not same_base_url("not a url", ROOT)
