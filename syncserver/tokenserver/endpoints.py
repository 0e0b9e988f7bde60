"""The URLs a token carries: a node's base URL as storage nodes compare it, and ``api_endpoint``.

The node list keeps URLs with a trailing ``/`` (``https://sync.example.org/``);
a token's ``node`` and ``api_endpoint`` have none, with lower-case scheme and
host and no default port, which is the form a storage node compares its own
public URL with (reference §1.8, §1.9).
"""

from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def node_base_url(url):
    """``"HTTPS://Sync.Example.org:443/sync/"`` -> ``"https://sync.example.org/sync"``.

    Raises ValueError for anything that is not an http(s) URL with a host.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL with a host")
    if parts.username is not None or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: a node URL has no user, query or fragment")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port  # ValueError for a port that is not a number in range
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}{parts.path.rstrip('/')}"


def api_endpoint(node_base, uid):
    """Where the client sends its storage requests: ``<node>/1.5/<uid>``."""
    return f"{node_base}/1.5/{uid}"
