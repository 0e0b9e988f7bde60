"""A Sync 1.5 client over real HTTP, and the short sync a desktop Firefox does.

:class:`Sync15Client` is the stdlib :class:`~tests.e2e.conftest.Client`
(one keep-alive connection) with every request Hawk-signed as Firefox signs
it: for the URL the *client* sees, which need not be the socket it talks to
(behind a proxy the client sees ``https://sync.example.test/...`` while the
bytes go to a port on 127.0.0.1). :func:`first_sync15` is the scenario every
deployment test runs: info/configuration, meta/global with
``X-If-Unmodified-Since``, a batch upload of a few hundred records, an
incremental read, paging, deletes.
"""

import json
import time
from decimal import Decimal
from urllib.parse import quote, urlsplit

from syncserver.testing.sync15_client import hawk_header, mint_token
from tests.e2e.conftest import Client, timestamp

#: Keys info/configuration announces (reference §3.4).
CONFIGURATION_KEYS = {"max_request_bytes", "max_post_records", "max_post_bytes",
                      "max_total_records", "max_total_bytes", "max_record_payload_bytes"}


class Sync15Client(Client):
    """``uid``'s client on ``node`` (the URL in its token, as the client reached the server).

    ``connect`` is where the bytes go (default: ``node``); it must have the
    same path as ``node``. ``headers`` go on every request (a proxy's).
    ``token_node`` mints the token for another node than the one signed for.
    """

    def __init__(self, node, uid, secret, connect=None, headers=None, timeout=60,
                 token_node=None, **token):
        node = node.rstrip("/")
        connect = (connect or node).rstrip("/")
        assert urlsplit(connect).path == urlsplit(node).path, (connect, node)
        super().__init__(f"{connect}/1.5/{uid}/", timeout=timeout)
        self.node = node
        self.uid = uid
        self.credentials = mint_token(uid, token_node or node, secret, **token)
        self.extra_headers = dict(headers or {})

    def request(self, method, path, body=None, headers=None, auth=True,
                content_type="application/json"):
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode("utf-8")
        all_headers = dict(self.extra_headers)
        if auth:
            origin = "{0.scheme}://{0.netloc}".format(urlsplit(self.node))
            all_headers["Authorization"] = hawk_header(method, origin + self.url(path),
                                                       self.credentials)
        all_headers.update(headers or {})
        return super().request(method, path, body, all_headers, auth=False,
                               content_type=content_type)


def records(prefix, count, payload_bytes=300):
    """``count`` records with distinct ids and sortindexes (desktop-like 12-character ids)."""
    return [{"id": f"{prefix}{n:08d}"[-12:].rjust(12, "x"), "sortindex": n,
             "payload": json.dumps({"ciphertext": f"{prefix}{n}".ljust(payload_bytes, "=")})}
            for n in range(count)]


def ok(response, status=200):
    assert response.status == status, response
    return response


def first_sync15(client, batch_sizes=(100, 100, 100), page=70):
    """A first sync then an incremental one, as desktop Firefox does them; checks each answer.

    Leaves the storage empty again (DELETE of the whole storage).
    """
    configuration = ok(client.get("info/configuration")).json()
    assert set(configuration) >= CONFIGURATION_KEYS, configuration
    assert configuration["max_post_records"] >= max(batch_sizes), configuration
    info = ok(client.get("info/collections"))
    assert info.json() == {}, info
    assert timestamp(info.headers["X-Last-Modified"]) == 0

    # meta/global: created only if absent, then replaced only if unchanged since.
    meta = {"id": "global", "payload": json.dumps({"syncID": "abcdefghijkl",
                                                   "storageVersion": 5})}
    created = ok(client.put("storage/meta/global", meta, headers={"X-If-Unmodified-Since": "0"}))
    meta_stamp = timestamp(created.text)
    assert timestamp(created.headers["X-Last-Modified"]) == meta_stamp
    refused = client.put("storage/meta/global", meta, headers={"X-If-Unmodified-Since": "0"})
    assert refused.status == 412, refused
    assert timestamp(refused.headers["X-Last-Modified"]) == meta_stamp
    ok(client.put("storage/meta/global", meta,
                  headers={"X-If-Unmodified-Since": created.headers["X-Last-Modified"]}))
    # An id that must be percent-encoded on the wire (and signed so).
    braced = ok(client.put("storage/clients/" + quote("{client-1}", safe=""),
                           {"payload": "a client record"}))
    record = ok(client.get("storage/clients/%7Bclient-1%7D")).json()
    assert (record["id"], record["payload"]) == ("{client-1}", "a client record")
    assert timestamp(braced.text) > meta_stamp

    # A batch upload: nothing is visible until the commit, then all of it at one timestamp.
    uploaded = records("b", sum(batch_sizes))
    chunks, start = [], 0
    for size in batch_sizes:
        chunks.append(uploaded[start:start + size])
        start += size
    before_batch = ok(client.get("info/collections")).json()
    opened = ok(client.post("storage/bookmarks?batch=true", chunks[0],
                            headers={"X-If-Unmodified-Since": "0"}), 202).json()
    batch_id = opened["batch"]
    assert sorted(opened["success"]) == sorted(r["id"] for r in chunks[0]) and not opened["failed"]
    for chunk in chunks[1:-1]:
        appended = ok(client.post(f"storage/bookmarks?batch={batch_id}", chunk), 202).json()
        assert appended["batch"] == batch_id and len(appended["success"]) == len(chunk)
    assert ok(client.get("storage/bookmarks")).json() == []
    assert ok(client.get("info/collections")).json() == before_batch
    committed = ok(client.post(f"storage/bookmarks?batch={batch_id}&commit=true", chunks[-1],
                               headers={"X-If-Unmodified-Since": "0"})).json()
    batch_stamp = timestamp(_two_decimals(committed["modified"]))
    assert len(committed["success"]) == len(chunks[-1]) and not committed["failed"]
    full = ok(client.get("storage/bookmarks?full=1"))
    stored = full.json()
    assert int(full.headers["X-Weave-Records"]) == len(uploaded)
    assert sorted(r["id"] for r in stored) == sorted(r["id"] for r in uploaded)
    assert {timestamp(_two_decimals(r["modified"])) for r in stored} == {batch_stamp}
    assert {r["id"]: r["payload"] for r in stored} == {r["id"]: r["payload"] for r in uploaded}
    # The batch is gone: committing it again is a 400.
    assert client.post(f"storage/bookmarks?batch={batch_id}&commit=true", []).status == 400

    # Incremental: what changed since the last sync, and nothing after the commit.
    changed = ok(client.get(f"storage/bookmarks?newer={_text(meta_stamp)}")).json()
    assert sorted(changed) == sorted(r["id"] for r in uploaded)
    since = _two_decimals(committed["modified"])
    assert ok(client.get(f"storage/bookmarks?newer={since}")).json() == []
    collections = ok(client.get("info/collections")).json()
    assert set(collections) == {"meta", "clients", "bookmarks"}
    assert timestamp(_two_decimals(collections["bookmarks"])) == batch_stamp

    # Paging as desktop does: a limit, then offset tokens, pinned with X-If-Unmodified-Since.
    seen, offset, pages = [], None, 0
    while True:
        query = f"full=1&sort=index&limit={page}" + (f"&offset={offset}" if offset else "")
        answer = ok(client.get(f"storage/bookmarks?{query}",
                               headers={"X-If-Unmodified-Since": since}))
        pages += 1
        body = answer.json()
        assert int(answer.headers["X-Weave-Records"]) == len(body) <= page
        seen += [r["id"] for r in body]
        offset = answer.headers.get("X-Weave-Next-Offset")
        if offset is None:
            break
    assert pages == -(-len(uploaded) // page)
    assert seen == [r["id"] for r in sorted(uploaded, key=lambda r: -r["sortindex"])]

    # Deletes: two ids, then the collection, then everything.
    doomed = [uploaded[0]["id"], uploaded[1]["id"]]
    deleted = ok(client.delete(f"storage/bookmarks?ids={','.join(doomed)}")).json()
    assert timestamp(_two_decimals(deleted["modified"])) > batch_stamp
    left = ok(client.get("storage/bookmarks")).json()
    assert len(left) == len(uploaded) - 2 and not set(doomed) & set(left)
    ok(client.delete("storage/bookmarks"))
    assert "bookmarks" not in ok(client.get("info/collections")).json()
    assert client.get("storage/bookmarks/" + uploaded[5]["id"]).status == 404
    ok(client.delete("storage"))
    assert ok(client.get("info/collections")).json() == {}


def _two_decimals(value):
    """A JSON number timestamp as the server's two-decimal text."""
    return f"{Decimal(str(value)):.2f}"


def _text(stamp):
    return f"{stamp:.2f}"


def wait_until(condition, timeout=10.0):
    """Poll ``condition()`` until it is true; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)
