"""A first sync, exactly as PROTOCOL.md "A first sync, as a 1.1 client does it" describes it.

One device registers, uploads meta/global, crypto/keys, its client record and
250 bookmarks; a second device (its own connection, same credentials) reads
them back in every output format and in pages; then an incremental sync and
a reset. :func:`first_sync` takes the server's base URL, so the same scenario
runs against ``paster serve``, gunicorn and Apache (at the root or under a
path prefix).
"""

import base64
import json
import random
import re
import struct

from .conftest import Client, new_account, timestamp

RECORD_FIELDS = {"id", "modified", "sortindex", "payload", "parentid", "predecessorid"}
INFO_COLLECTIONS_RE = re.compile(r'\{(?:"[a-zA-Z0-9._-]+": -?\d+\.\d{2}(?:, (?!\}))?)*\}')


def guid(rng):
    """A 12-character base64url id, as Sync 1.1 clients make them."""
    return base64.urlsafe_b64encode(rng.randbytes(9)).decode("ascii")


def encrypted_payload(rng, extra=""):
    """The shape of a real payload: JSON text with ciphertext, IV and hmac."""
    return json.dumps({
        "ciphertext": base64.b64encode(rng.randbytes(rng.randint(16, 600))).decode("ascii") + extra,
        "IV": base64.b64encode(rng.randbytes(16)).decode("ascii"),
        "hmac": rng.randbytes(32).hex(),
    })


def parse_whoisi(body):
    """Split an application/whoisi body into its JSON texts (4-byte big-endian lengths)."""
    chunks, position = [], 0
    while position < len(body):
        assert position + 4 <= len(body), "truncated whoisi length prefix"
        (length,) = struct.unpack(">I", body[position:position + 4])
        position += 4
        assert position + length <= len(body), "truncated whoisi record"
        chunks.append(body[position:position + length])
        position += length
    return chunks


def parse_newlines(body):
    assert body.endswith(b"\n"), "application/newlines must end every record with a newline"
    return body[:-1].split(b"\n")


def check_record(record, sent, modified):
    """A full record returned by the server against the WBO that was sent."""
    assert set(record) <= RECORD_FIELDS, record
    assert record["id"] == sent["id"]
    assert record["payload"] == sent["payload"]
    assert record["sortindex"] == sent["sortindex"]
    assert record["parentid"] == sent["parentid"]
    assert "predecessorid" not in record
    assert record["modified"] == modified


def first_sync(base_url):
    """Run the scenario against the server at ``base_url`` (no trailing slash)."""
    rng = random.Random(20240611)
    email, username, password = new_account("first-sync")

    # 1. Registration.
    registration = Client(base_url + "/")
    response = registration.get(f"user/1.0/{username}")
    assert (response.status, response.text) == (200, "0")
    response = registration.put(f"user/1.0/{username}", {"password": password, "email": email})
    assert (response.status, response.text) == (200, username)
    response = registration.get(f"user/1.0/{username}")
    assert (response.status, response.text) == (200, "1")

    # 2. Node assignment: this server's own URL (prefix included), as the client reached it.
    response = registration.get(f"user/1.0/{username}/node/weave")
    assert response.status == 200
    node = response.text
    assert node == base_url + "/"
    registration.close()

    device1 = Client(f"{node}1.1/{username}/", username, password)

    # 3. Empty account, then meta/global, crypto/keys, clients.
    response = device1.get("info/collections")
    assert response.status == 200
    assert response.json() == {}
    assert response.content_type == "application/json"

    meta_global = {"id": "global", "payload": json.dumps({
        "syncID": guid(rng), "storageVersion": 5,
        "engines": {name: {"version": 1, "syncID": guid(rng)}
                    for name in ("bookmarks", "history", "passwords", "prefs", "tabs")}})}
    response = device1.put("storage/meta/global", meta_global)
    assert response.status == 200, response
    meta_ts = timestamp(response.text)
    assert response.weave_timestamp == meta_ts

    keys = {"id": "keys", "payload": encrypted_payload(rng)}
    response = device1.put("storage/crypto/keys", keys)
    assert response.status == 200, response  # exactly 200: Firefox regenerates keys otherwise
    keys_ts = timestamp(response.text)
    assert response.weave_timestamp == keys_ts
    assert keys_ts > meta_ts
    response = device1.get("info/collections")
    assert response.status == 200
    assert INFO_COLLECTIONS_RE.fullmatch(response.text), response.text
    assert response.json()["crypto"] >= keys_ts

    client_id = guid(rng)
    client_record = {"id": client_id, "payload": encrypted_payload(rng), "ttl": 1814400}
    response = device1.post("storage/clients", [client_record])
    assert response.status == 200, response
    result = response.json()
    assert result["success"] == [client_id]
    assert result["failed"] == {}
    clients_ts = result["modified"]
    assert re.search(r'"modified": \d+\.\d{2}[,}]', response.text), response.text
    assert response.weave_timestamp == clients_ts

    # 4. 250 bookmarks in POSTs of 100, 100 and 50, the later ones conditional.
    sortindexes = rng.sample(range(-5000, 100000), 250)
    unicode_tails = ["", "", " caf\u00e9 \u2603 \U0001d11e \u00ff", "\u0000\u001f\"\\/\n\t"]
    bookmarks = [{"id": guid(rng), "parentid": rng.choice(["menu", "toolbar", "unfiled"]),
                  "sortindex": sortindexes[i],
                  "payload": encrypted_payload(rng, unicode_tails[i % len(unicode_tails)])}
                 for i in range(250)]
    assert len({b["id"] for b in bookmarks}) == 250
    modified_of = {}
    last = None
    batch_stamps = []
    for start, stop in ((0, 100), (100, 200), (200, 250)):
        batch = bookmarks[start:stop]
        headers = {"X-If-Unmodified-Since": last} if last is not None else {}
        response = device1.post("storage/bookmarks", batch, headers=headers)
        assert response.status == 200, response
        result = response.json()
        assert result["success"] == [b["id"] for b in batch]
        assert result["failed"] == {}
        stamp = result["modified"]
        assert response.weave_timestamp == stamp
        assert not batch_stamps or stamp > batch_stamps[-1]
        batch_stamps.append(stamp)
        modified_of.update({b["id"]: stamp for b in batch})
        last = response.headers["X-Weave-Timestamp"]
    assert batch_stamps[0] > clients_ts

    # A stale X-If-Unmodified-Since is refused and writes nothing.
    response = device1.post("storage/bookmarks", [{"id": "stale", "payload": "x"}],
                            headers={"X-If-Unmodified-Since": str(batch_stamps[0])})
    assert response.status == 412, response
    device1.close()

    # 5. A second device, its own connection, the same credentials.
    device2 = Client(f"{node}1.1/{username}/", username, password)
    response = device2.get("info/collections")
    assert response.status == 200
    info = response.json()
    assert set(info) == {"meta", "crypto", "clients", "bookmarks"}
    assert info["bookmarks"] == batch_stamps[-1]
    assert info["crypto"] == keys_ts
    assert info["meta"] == meta_ts
    assert info["clients"] == clients_ts
    assert response.headers.get("X-Weave-Records") == "4"

    query = "storage/bookmarks?full=1&sort=index&newer=0"
    expected_order = [b["id"] for b in sorted(bookmarks, key=lambda b: -b["sortindex"])]
    sent = {b["id"]: b for b in bookmarks}

    as_json = device2.get(query, headers={"Accept": "application/json"})
    assert as_json.status == 200
    assert as_json.content_type == "application/json"
    assert as_json.headers.get("X-Weave-Records") == "250"
    records = as_json.json()
    assert isinstance(records, list) and len(records) == 250
    assert all(isinstance(record, dict) for record in records)
    assert [record["id"] for record in records] == expected_order
    for record in records:
        check_record(record, sent[record["id"]], modified_of[record["id"]])

    as_newlines = device2.get(query, headers={"Accept": "application/newlines"})
    assert as_newlines.status == 200
    assert as_newlines.content_type == "application/newlines"
    lines = parse_newlines(as_newlines.body)
    assert len(lines) == 250
    newline_records = [json.loads(line) for line in lines]
    assert all(isinstance(record, dict) for record in newline_records)

    as_whoisi = device2.get(query, headers={"Accept": "application/whoisi"})
    assert as_whoisi.status == 200
    assert as_whoisi.content_type == "application/whoisi"
    chunks = parse_whoisi(as_whoisi.body)
    assert len(chunks) == 250
    whoisi_records = [json.loads(chunk) for chunk in chunks]

    # The same records, byte for byte, in all three framings.
    assert chunks == lines
    assert as_json.body == b"[" + b", ".join(lines) + b"]"
    assert [json.loads(line) for line in lines] == json.loads(as_json.body) == whoisi_records
    for record in newline_records:
        assert record["payload"] == sent[record["id"]]["payload"]

    # Pages of 60 with limit/offset (newlines, as clients page) cover everything once, in order.
    paged = []
    for offset in range(0, 300, 60):
        page = device2.get(f"{query}&limit=60&offset={offset}",
                           headers={"Accept": "application/newlines"})
        assert page.status == 200
        page_lines = parse_newlines(page.body) if page.body else []
        assert len(page_lines) == max(0, min(60, 250 - offset))
        paged.extend(page_lines)
    assert paged == lines
    ids_paged = []
    for offset in (0, 100, 200, 250):
        page = device2.get(f"storage/bookmarks?sort=index&limit=100&offset={offset}")
        assert page.status == 200
        ids_paged.extend(page.json())
    assert ids_paged == expected_order
    assert len(set(ids_paged)) == 250

    # 6. Incremental sync: one more write on device 1, device 2 fetches only that.
    since = info["bookmarks"]
    device1 = Client(f"{node}1.1/{username}/", username, password)
    changed = dict(bookmarks[17], payload=encrypted_payload(rng, " edited"))
    added = {"id": guid(rng), "parentid": "toolbar", "sortindex": 123456,
             "payload": encrypted_payload(rng)}
    response = device1.post("storage/bookmarks", [changed, added],
                            headers={"X-If-Unmodified-Since": str(since)})
    assert response.status == 200, response
    result = response.json()
    assert result["success"] == [changed["id"], added["id"]]
    assert result["failed"] == {}
    new_stamp = result["modified"]
    assert new_stamp > since

    response = device2.get("info/collections")
    info2 = response.json()
    assert info2["bookmarks"] == new_stamp
    assert {k: v for k, v in info2.items() if k != "bookmarks"} == \
        {k: v for k, v in info.items() if k != "bookmarks"}
    response = device2.get(f"storage/bookmarks?full=1&sort=index&newer={since}")
    assert response.status == 200
    changes = response.json()
    assert [record["id"] for record in changes] == [added["id"], changed["id"]]
    check_record(changes[0], added, new_stamp)
    check_record(changes[1], changed, new_stamp)
    response = device2.get(f"storage/bookmarks?newer={since}")
    assert sorted(response.json()) == sorted([added["id"], changed["id"]])
    response = device2.get(f"storage/bookmarks?newer={new_stamp}")
    assert response.json() == []
    response = device2.get("storage/bookmarks?full=1&newer=0")
    assert len(response.json()) == 251

    # 7. Reset: DELETE storage with X-Confirm-Delete.
    response = device1.delete("storage", headers={"X-Confirm-Delete": "1"})
    assert response.status == 200, response
    timestamp(response.text)
    response = device2.get("info/collections")
    assert response.status == 200
    assert response.json() == {}
    response = device2.get("storage/bookmarks")
    assert (response.status, response.json()) == (200, [])
    response = device2.get("storage/crypto/keys")
    assert response.status == 404
    device1.close()
    device2.close()

    # The account itself is still there.
    registration = Client(base_url + "/")
    assert registration.get(f"user/1.0/{username}").text == "1"
    registration.close()
