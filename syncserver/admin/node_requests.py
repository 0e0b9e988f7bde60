"""Requests the tokenserver's administrator sends to a storage node: deleting a uid's storage.

A storage node serving the 1.5 API accepts any token signed with a shared
``global.master_secret`` and naming it as its node, so the tokenserver's
host can delete a replaced uid's records with the node's own API, exactly
as a client deleting its storage does: ``DELETE <node>/1.5/<uid>`` with a
token minted for that uid on that node (valid a few minutes) and a Hawk
signature. Nothing has to run on the node for it. The token and its key are
never logged.
"""

import base64
import os
import ssl
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from syncserver.protocol.tokens import make_token
from syncserver.tokenserver.endpoints import api_endpoint, node_base_url
from syncserver.web.hawk import hawk_mac

#: Seconds the token of one deletion stays valid.
TOKEN_SECONDS = 300
_DEFAULT_PORTS = {"http": 80, "https": 443}


class NodeRequestFailed(Exception):
    """The node did not delete: unreachable, or it refused (``status`` set). Safe to print."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


def delete_storage_on_node(node_url, uid, fxa_uid, secret, *, timeout=10.0, ca_file=None):
    """``DELETE <node>/1.5/<uid>`` signed for ``uid``; returns when the node answered 200.

    Raises :class:`NodeRequestFailed` otherwise. Deleting storage that is
    already empty is a 200 too, so running this twice is harmless.
    """
    node = node_base_url(node_url)
    token_id, key = make_token({"uid": int(uid), "node": node, "fxa_uid": fxa_uid}, secret,
                               duration=TOKEN_SECONDS)
    url = api_endpoint(node, uid)
    parts = urlsplit(url)
    ts = str(int(time.time()))
    nonce = base64.b64encode(os.urandom(8)).decode("ascii")
    port = parts.port or _DEFAULT_PORTS[parts.scheme]
    mac = hawk_mac(key, ts, nonce, "DELETE", parts.path, parts.hostname, port)
    request = urllib.request.Request(url, method="DELETE", headers={
        "Authorization": f'Hawk id="{token_id}", ts="{ts}", nonce="{nonce}", mac="{mac}"',
        "User-Agent": "syncserver-admin purge-expired"})
    context = ssl.create_default_context(cafile=ca_file) if parts.scheme == "https" else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            response.read()
    except urllib.error.HTTPError as error:
        error.close()
        hint = {401: " (does it share global.master_secret, and is its public URL the one "
                     "in the node list?)", 404: " (is storage15.enabled on there?)"}
        raise NodeRequestFailed(f"{node} answered {error.code} to DELETE /1.5/{uid}"
                                f"{hint.get(error.code, '')}", status=error.code) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise NodeRequestFailed(f"{node} is unreachable: {reason}") from None
