"""What the application learned about a request, kept in its WSGI environ.

The client's address is resolved once per request (through trusted proxies,
:func:`syncserver.web.proxies.client_address`) and the authenticated
username is left behind by a successful login, so that authentication,
throttling, CSRF checks, security logs and the access log all see the same
values without recomputing them.
"""

#: Where the application leaves the client's address, as trusted proxies report it.
CLIENT_ADDRESS_KEY = "syncserver.client_address"
#: Where a successful login leaves the username, for the access log.
USERNAME_KEY = "syncserver.username"


def client_address(request):
    """The client's address as the application resolved it, else the peer."""
    return request.environ.get(CLIENT_ADDRESS_KEY) or request.remote_addr or "-"
