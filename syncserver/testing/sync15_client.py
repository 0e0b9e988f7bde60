"""A Sync 1.5 client's side of authentication, for tests, benchmarks and plugin authors.

Mints tokens as the tokenserver does (:func:`mint_token`) and signs requests
as desktop Firefox does (:func:`hawk_header`: attributes ``id, ts, nonce,
[hash,] [ext,] mac``, all quoted, an 8-byte base64 nonce), with knobs a
test needs: a clock offset for skew tests, a fixed nonce for replay tests
and an optional payload hash (Firefox sends none). :func:`signed` runs a
signed request through a WebTest ``TestApp``; WebTest is imported only
there, so importing this module needs nothing beyond the server's own
dependencies.
"""

import base64
import os
import time
from typing import NamedTuple
from urllib.parse import urlsplit

from syncserver.protocol.tokens import DEFAULT_DURATION, make_token
from syncserver.web.hawk import hawk_mac, payload_hash
from syncserver.web.request_target import PublicURL


class Credentials(NamedTuple):
    """What the tokenserver hands a client: the Hawk ``id`` and ``key``."""

    id: str
    key: str


def mint_token(uid, node, secret, duration=DEFAULT_DURATION, now=None, **fields):
    """Credentials for ``uid`` on ``node`` (its public base URL), signed with ``secret``.

    ``fields`` adds payload entries (``fxa_uid``, ``expires``, ``salt``, ...).
    """
    token_id, key = make_token({"uid": uid, "node": node, **fields}, secret,
                               duration=duration, now=now)
    return Credentials(token_id, key)


def hawk_header(method, url, credentials, body=None, content_type=None, ts_offset=0,
                nonce=None, ext=None, now=None):
    """The ``Authorization`` value for ``method url`` (path and query exactly as sent).

    With ``body`` (bytes or text) a payload hash over it and ``content_type``
    is included. ``ts_offset`` moves the client's clock (seconds); ``nonce``
    fixes the nonce (default: random, as Firefox).
    """
    parts = urlsplit(url)
    public = PublicURL.parse(f"{parts.scheme}://{parts.netloc}")
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    ts = str(int((time.time() if now is None else now) + ts_offset))
    if nonce is None:
        nonce = base64.b64encode(os.urandom(8)).decode("ascii")
    hashed = ""
    if body is not None:
        hashed = payload_hash(content_type, body.encode("utf-8") if isinstance(body, str) else body)
    mac = hawk_mac(credentials.key, ts, nonce, method, target, public.host, public.port,
                   hashed, ext or "")
    attributes = [("id", credentials.id), ("ts", ts), ("nonce", nonce)]
    if hashed:
        attributes.append(("hash", hashed))
    if ext:
        attributes.append(("ext", ext))
    attributes.append(("mac", mac))
    return "Hawk " + ", ".join(f'{name}="{_quoted(value)}"' for name, value in attributes)


def _quoted(value):
    return value.replace("\\", "\\\\").replace('"', '\\"')


def signed(app, method, path, credentials, node, body=None, content_type=None,
           hash_payload=False, headers=None, ts_offset=0, nonce=None, status=None, now=None):
    """Send a Hawk-signed request to a WebTest ``TestApp``; returns the WebTest response.

    ``path`` is below ``node`` (e.g. ``/1.5/42/info/collections?x=1``),
    percent-encoded as it goes on the wire; the request is signed for
    ``node + path`` and reaches the app as ``path`` with that raw
    ``REQUEST_URI`` (an app at the root, or behind a proxy that strips the
    node's path prefix). ``status`` as in WebTest; default: any status.
    ``now`` fixes the client's clock (default: the time of the call).
    """
    from webtest import TestRequest

    body_bytes = body.encode("utf-8") if isinstance(body, str) else body
    url = node.rstrip("/") + path
    all_headers = dict(headers or {})
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    all_headers["Authorization"] = hawk_header(
        method, url, credentials, body=body_bytes if hash_payload else None,
        content_type=content_type, ts_offset=ts_offset, nonce=nonce, now=now)
    request = TestRequest.blank(path, method=method, headers=all_headers)
    request.environ["REQUEST_URI"] = path
    if body_bytes is not None:
        request.body = body_bytes
    return app.request(request, status=status, expect_errors=status is None)
