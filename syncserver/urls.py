"""The server's public address, as clients must see it in node URLs and e-mailed links."""


def public_base_url(request, global_settings):
    """The URL clients reach this application at, without a trailing slash.

    Includes the scheme, host, port and any path prefix (``SCRIPT_NAME``) the
    server is mounted under.
    """
    return request.application_url.rstrip("/")
