"""The server's public address, as clients must see it in node URLs and e-mailed links."""

from urllib.parse import quote

from syncserver.web.proxies import forwarded_origin


def public_base_url(request, global_settings):
    """The URL clients reach this application at, without a trailing slash.

    In order of precedence: ``global.public_url`` verbatim (it names the
    prefix too); else the request's own scheme, host and path prefix
    (``SCRIPT_NAME``), each replaced by ``X-Forwarded-Proto``,
    ``X-Forwarded-Host`` and ``X-Forwarded-Prefix`` (which goes before
    ``SCRIPT_NAME``) when a trusted proxy sent them.
    """
    if global_settings.public_url:
        return global_settings.public_url.rstrip("/")
    scheme, host, prefix = forwarded_origin(request.environ, global_settings.trusted_proxies)
    if scheme is None and host is None and prefix is None:
        return request.application_url.rstrip("/")
    scheme = scheme or request.scheme
    if host is None:
        host = request.host
        if scheme != request.scheme:
            host = _without_default_port(host, request.scheme)
    host = _without_default_port(host, scheme)
    path = (prefix or "").rstrip("/") + quote(request.script_name.rstrip("/"))
    return f"{scheme}://{host}{path}"


def _without_default_port(host, scheme):
    default = ":443" if scheme == "https" else ":80"
    return host[:-len(default)] if host.endswith(default) else host
