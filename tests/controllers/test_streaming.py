"""Large collection reads are streamed: a lazy body, rendered chunk by chunk, from one snapshot."""

import json
import struct

from webob import Request

from syncserver.storage import ItemQuery, ItemWrite

RECORDS = 2500


def fill(storage, user_id, count=RECORDS):
    for start in range(0, count, 500):
        storage.set_items(user_id, "history", [
            ItemWrite(f"h{n:05d}", payload=f"payload {n} é", sortindex=n)
            for n in range(start, min(start + 500, count))], 1_700_000_000_00 + start)


def call(app, account, path, accept=None):
    """The WSGI call itself: status, headers and the app_iter, nothing read yet."""
    headers = dict(account.headers)
    if accept:
        headers["Accept"] = accept
    request = Request.blank(f"{account.root}/{path}", headers=headers)
    status, headers, app_iter = request.call_application(app.app)
    return status, dict(headers), app_iter


def user_id(app, account):
    return app.app.auth.get_user(account.username).user_id


def test_a_large_read_streams_in_every_format(app, alice):
    fill(app.app.storage, user_id(app, alice))
    expected_ids = [f"h{n:05d}" for n in reversed(range(RECORDS))]
    for accept in (None, "application/newlines", "application/whoisi"):
        status, headers, app_iter = call(app, alice, "storage/history?full=1&sort=index", accept)
        assert status.startswith("200")
        assert headers["X-Weave-Records"] == str(RECORDS)
        assert "Content-Length" not in headers
        assert not isinstance(app_iter, (list, tuple, bytes))
        pieces = list(app_iter)
        app_iter.close()
        assert len(pieces) > 5  # rendered chunk by chunk, not as one body
        body = b"".join(pieces)
        if accept is None:
            records = json.loads(body)
        elif accept == "application/newlines":
            records = [json.loads(line) for line in body.decode().splitlines()]
        else:
            records, offset = [], 0
            while offset < len(body):
                (size,) = struct.unpack(">I", body[offset:offset + 4])
                records.append(json.loads(body[offset + 4:offset + 4 + size]))
                offset += 4 + size
        assert [record["id"] for record in records] == expected_ids
        assert records[0]["payload"] == f"payload {RECORDS - 1} é"


def test_the_streamed_body_is_the_bytes_of_an_unstreamed_one(app, alice):
    fill(app.app.storage, user_id(app, alice))
    for accept in (None, "application/newlines", "application/whoisi"):
        for query in ("full=1&sort=newest", "sort=oldest", "full=1&sort=index&offset=10"):
            streamed = b"".join(call(app, alice, f"storage/history?{query}", accept)[2])
            # The same answer in pages small enough to be rendered at once.
            pages = [app.get(f"{alice.root}/storage/history?{query}&limit=500&offset={o}",
                             headers={**alice.headers, "Accept": accept or "application/json"})
                     for o in range(0, RECORDS + 500, 500)]
            if accept is None:
                joined = [record for page in pages for record in page.json]
                assert json.loads(streamed) == joined
            else:
                assert streamed == b"".join(page.body for page in pages)
            if "offset=10" in query:
                break  # the paged comparison above assumes no offset of its own


def test_the_body_is_read_lazily_from_one_snapshot(app, alice):
    storage = app.app.storage
    uid = user_id(app, alice)
    fill(storage, uid)
    _status, headers, app_iter = call(app, alice, "storage/history?full=1")
    assert headers["X-Weave-Records"] == str(RECORDS)
    # Changes made after the answer started are not in it: count and body agree.
    storage.set_items(uid, "history", [ItemWrite(f"late{n}", payload="x") for n in range(20)],
                      1_800_000_000_00)
    storage.delete_items(uid, "history", ItemQuery(ids=("h00001", "h00002")), 1_800_000_000_01)
    records = json.loads(b"".join(app_iter))
    app_iter.close()
    assert len(records) == RECORDS
    assert {record["id"] for record in records} == {f"h{n:05d}" for n in range(RECORDS)}
    # The next read sees the changes.
    assert app.get(f"{alice.root}/storage/history", headers=alice.headers).headers[
        "X-Weave-Records"] == str(RECORDS + 18)


def test_a_body_closed_unread_releases_its_snapshot(app, alice):
    fill(app.app.storage, user_id(app, alice))
    for _ in range(25):  # more than the connection pool holds
        _status, _headers, app_iter = call(app, alice, "storage/history")
        app_iter.close()
    assert app.get(f"{alice.root}/storage/history?limit=3", headers=alice.headers).json == [
        "h00000", "h00001", "h00002"]


def test_small_answers_are_one_body_with_its_length(app, alice):
    fill(app.app.storage, user_id(app, alice), count=30)
    _status, headers, app_iter = call(app, alice, "storage/history?full=1")
    assert headers["X-Weave-Records"] == "30"
    assert int(headers["Content-Length"]) == len(b"".join(app_iter))
    assert len(list(call(app, alice, "storage/history")[2])) == 1
