"""The Sync 1.5 benchmark's floor: the benchmarked 1.5 requests, standard library only.

This is not a storage node. It answers exactly the requests that
``bench/sync15_run.py`` measures, with the same checks and the same SQL as
syncserver's SQL backend, and nothing else in the way: no framework, no
ORM, no routing table, plain :mod:`sqlite3` in WAL mode. Whatever syncserver
spends beyond this, per request, is the price of its framework and its code.

Every request is authenticated as a storage node must (reference §2), with
:mod:`hmac` and :mod:`hashlib` only, nothing cached between requests:

- the ``Authorization: Hawk id="..", ts="..", nonce="..", mac=".."`` header
  parsed; the token id (tokenlib format: ``urlsafe_b64(payload + HMAC-SHA256
  (signing key, payload))``) checked against the master secret in constant
  time, its JSON read, its expiry and node (``http://`` + the request's
  ``Host``, which must be one of ``FLOOR15_HOSTS``) checked, its uid equal to
  the path's;
- the token's derived key computed (HKDF-SHA256 of the secret, salted with
  the token's salt), the Hawk MAC over ``hawk.1.header``, ts, nonce, method,
  request-target, host, port, hash, ext compared in constant time;
- the timestamp within 900 s of the clock, and the ``(token, ts, nonce)``
  triple not seen before (a bounded in-process dict).

Requests answered (``<uid>`` the token's uid, stored as user id ``-uid`` as
syncserver does):

- ``GET /1.5/<uid>/info/collections``
- ``GET /1.5/<uid>/storage/<c>?full=1&limit=N&sort=newest`` (``X-Weave-Next-Offset``
  as a plain count)
- ``POST /1.5/<uid>/storage/<c>?batch=true``, ``?batch=<id>``,
  ``?batch=<id>&commit=true``: open, append, commit (the statements of
  ``syncserver/storage/sql_batches.py`` in the same transactions)
- ``PUT /1.5/<uid>/storage/<c>/<id>``

The tables must exist (``sync15_run.py`` creates them from syncserver's own
table definitions, so keys and indexes are the same by construction). Run it
with any WSGI server::

    FLOOR15_DB=/tmp/f.db FLOOR15_SECRET=s FLOOR15_HOSTS=127.0.0.1:8000 \\
        gunicorn --chdir bench floor15_app:application
"""

import base64
import binascii
import collections
import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from urllib.parse import parse_qsl

NEVER_EXPIRES = 9_999_999_999
SKEW_SECONDS = 900
MAX_NONCES = 100_000
BATCH_LIFETIME_CS = 7200 * 100
COMMIT_CHUNK = 500
SIGNATURE_BYTES = 32
INFO_SIGNING = b"services.mozilla.com/tokenlib/v1/signing"
INFO_DERIVE = b"services.mozilla.com/tokenlib/v1/derive/"

_HAWK_ATTRIBUTE = re.compile(r'(\w+)="([^"\\]*)"')
_BATCH_ID = re.compile(r"[0-9a-f]{24}\Z")
_encode = json.encoder.encode_basestring_ascii
JSON_TYPE = ("Content-Type", "application/json")

# The statements syncserver's SQL backend runs for these requests (as SQLite receives them).
LOCK_USER = (
    "SELECT storage_users.last_modified, storage_users.quota_kb, storage_users.usage_bytes, "
    "storage_users.deleted_at, user_collections.modified FROM storage_users "
    "LEFT OUTER JOIN user_collections ON user_collections.userid = storage_users.userid "
    "AND user_collections.collection = ? WHERE storage_users.userid = ?")
ENSURE_USER = ("INSERT INTO storage_users (userid, last_modified) VALUES (?, ?) "
               "ON CONFLICT DO NOTHING")
COLLECTION_STAMP = ("SELECT modified FROM user_collections WHERE userid = ? AND collection = ?")
EXISTING = ("SELECT id, modified, ttl, payload_size FROM items "
            "WHERE userid = ? AND collection = ? AND id IN ({})")
EXISTING_ONE = ("SELECT id, modified, ttl, payload_size FROM items "
                "WHERE userid = ? AND collection = ? AND id = ?")
INSERT_ITEM = ("INSERT INTO items (userid, collection, id, sortindex, parentid, predecessorid, "
               "modified, payload, payload_size, ttl) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
UPDATE_ITEM = ("UPDATE items SET sortindex=?, modified=?, payload=?, payload_size=? "
               "WHERE userid = ? AND collection = ? AND id = ?")
STAGED_SIZES = "SELECT id, payload_size FROM batch_items WHERE batch = ? AND id IN ({})"
STAGED_FIRST = ("SELECT id, payload, sortindex, parentid, predecessorid, ttl FROM batch_items "
                "WHERE batch = ? ORDER BY id LIMIT ? OFFSET 0")
STAGED_NEXT = ("SELECT id, payload, sortindex, parentid, predecessorid, ttl FROM batch_items "
               "WHERE batch = ? AND id > ? ORDER BY id LIMIT ?")


class HTTPError(Exception):
    def __init__(self, status, body="0", headers=()):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = list(headers)


def unauthorized(reason):
    return HTTPError("401 Unauthorized", "0", [("WWW-Authenticate", "Hawk")])


def stamp_text(centiseconds):
    whole, frac = divmod(centiseconds, 100)
    return f"{whole}.{frac:02d}"


def hkdf_sha256(secret, salt, info):
    """32 bytes of HKDF-SHA256 (RFC 5869): one extract, one expand block."""
    prk = hmac.new(salt or b"\x00" * 32, secret, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def connect(path):
    connection = sqlite3.connect(path, timeout=15, isolation_level=None,
                                 check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA busy_timeout=15000")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


class Floor15App:
    """The WSGI application; one SQLite connection per thread."""

    def __init__(self, path, secret, hosts):
        self.path = path
        self.secret = secret.encode("utf-8")
        self.signing_key = hkdf_sha256(self.secret, None, INFO_SIGNING)
        self.hosts = set(hosts)
        self.local = threading.local()
        self.nonces = {}                   # (token id, ts, nonce) -> forget after
        self.nonce_order = collections.deque()
        self.lock = threading.Lock()
        self.collection_ids = {}

    def db(self):
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = self.local.connection = connect(self.path)
        return connection

    def __call__(self, environ, start_response):
        now = time.time()
        centis = round(now * 100)
        try:
            status, body, headers = self.dispatch(environ, now, centis)
        except HTTPError as error:
            status, body, headers = error.status, error.body, [JSON_TYPE] + error.headers
        except sqlite3.OperationalError:
            status, body, headers = ("503 Service Unavailable", "0",
                                     [JSON_TYPE, ("Retry-After", "10")])
        data = body.encode("ascii") if isinstance(body, str) else body
        if not any(name == "X-Weave-Timestamp" for name, _ in headers):
            headers.append(("X-Weave-Timestamp", stamp_text(centis)))
        headers.append(("Content-Length", str(len(data))))
        start_response(status, headers)
        return [data]

    # -- authentication -------------------------------------------------------

    def authenticate(self, environ, path_uid, now):
        header = environ.get("HTTP_AUTHORIZATION", "")
        if not header.startswith("Hawk ") or len(header) > 8192:
            raise unauthorized("not Hawk")
        attributes = dict(_HAWK_ATTRIBUTE.findall(header))
        token_id = attributes.get("id", "")
        ts, nonce, mac = attributes.get("ts", ""), attributes.get("nonce"), attributes.get("mac")
        if not (token_id and ts.isdigit() and nonce and mac):
            raise unauthorized("incomplete header")
        try:
            raw = base64.urlsafe_b64decode(token_id)
        except (binascii.Error, ValueError):
            raise unauthorized("token not base64") from None
        payload, signature = raw[:-SIGNATURE_BYTES], raw[-SIGNATURE_BYTES:]
        expected = hmac.new(self.signing_key, payload, hashlib.sha256).digest()
        if len(raw) <= SIGNATURE_BYTES or not hmac.compare_digest(signature, expected):
            raise unauthorized("bad token signature")
        data = json.loads(payload)
        host = environ.get("HTTP_HOST", "")
        if host not in self.hosts or data["node"] != "http://" + host:
            raise unauthorized("token for another node")
        if data["expires"] <= now or str(data["uid"]) != path_uid:
            raise unauthorized("token expired or for another uid")
        key = base64.urlsafe_b64encode(hkdf_sha256(
            self.secret, data["salt"].encode("ascii"),
            INFO_DERIVE + token_id.encode("ascii")))
        hostname, _, port = host.partition(":")
        target = environ.get("RAW_URI") or (environ["PATH_INFO"] + (
            "?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else ""))
        normalized = (f"hawk.1.header\n{ts}\n{nonce}\n{environ['REQUEST_METHOD']}\n{target}\n"
                      f"{hostname.lower()}\n{port or '80'}\n{attributes.get('hash', '')}\n"
                      f"{attributes.get('ext', '')}\n")
        computed = base64.b64encode(hmac.new(key, normalized.encode("latin-1"),
                                             hashlib.sha256).digest())
        if not hmac.compare_digest(computed, mac.encode("latin-1")):
            raise unauthorized("bad MAC")
        if abs(int(ts) - now) > SKEW_SECONDS:
            raise unauthorized("stale timestamp")
        triple = (token_id, ts, nonce)
        with self.lock:
            order = self.nonce_order
            while order and (order[0][0] < now or len(order) >= MAX_NONCES):
                self.nonces.pop(order.popleft()[1], None)
            if triple in self.nonces:
                raise unauthorized("nonce already used")
            until = int(ts) + SKEW_SECONDS
            self.nonces[triple] = until
            order.append((until, triple))
        return -data["uid"]

    # -- dispatch -----------------------------------------------------------

    def dispatch(self, environ, now, centis):
        parts = environ.get("PATH_INFO", "").strip("/").split("/")
        method = environ["REQUEST_METHOD"]
        if len(parts) < 3 or parts[0] != "1.5":
            raise HTTPError("404 Not Found")
        userid = self.authenticate(environ, parts[1], now)
        if parts[2] == "info" and parts[3:] == ["collections"] and method == "GET":
            return self.info_collections(userid, centis)
        if parts[2] == "storage" and len(parts) == 4:
            if method == "GET":
                return self.get_collection(userid, parts[3], environ, centis)
            if method == "POST":
                return self.post_collection(userid, parts[3], environ, centis)
        if parts[2] == "storage" and len(parts) == 5 and method == "PUT":
            return self.put_item(userid, parts[3], parts[4], environ, centis)
        raise HTTPError("404 Not Found")

    def collection_id(self, name):
        cid = self.collection_ids.get(name)
        if cid is None:
            row = self.db().execute("SELECT id FROM collections WHERE name = ?",
                                    (name,)).fetchone()
            if row is None:
                raise HTTPError("404 Not Found")  # the benchmark only uses existing ones
            cid = self.collection_ids[name] = row[0]
        return cid

    def read_stamps(self, headers, last_modified, centis):
        headers.append(("X-Last-Modified", stamp_text(last_modified)))
        headers.append(("X-Weave-Timestamp", stamp_text(max(centis, last_modified))))
        return headers

    # -- reads ----------------------------------------------------------------

    def info_collections(self, userid, centis):
        db = self.db()
        row = db.execute("SELECT last_modified, deleted_at FROM storage_users WHERE userid = ?",
                         (userid,)).fetchone()
        rows = db.execute("SELECT collection, modified FROM user_collections WHERE userid = ?",
                          (userid,)).fetchall()
        names = {cid: name for name, cid in self.collection_ids.items()}
        for cid, _ in rows:
            if cid not in names:
                name = db.execute("SELECT name FROM collections WHERE id = ?", (cid,)).fetchone()[0]
                self.collection_ids[name] = names[cid] = cid
        body = "{" + ", ".join(f"{_encode(names[cid])}: {stamp_text(modified)}"
                               for cid, modified in rows) + "}"
        return "200 OK", body, self.read_stamps([JSON_TYPE], row[0] if row else 0, centis)

    def get_collection(self, userid, collection, environ, centis):
        cid = self.collection_id(collection)
        query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
        if "full" not in query or query.get("sort") != "newest" or "limit" not in query:
            raise HTTPError("400 Bad Request", "1")  # only what the benchmark asks
        limit, offset = int(query["limit"]), int(query.get("offset", 0))
        db = self.db()
        row = db.execute(COLLECTION_STAMP, (userid, cid)).fetchone()
        stamp = row[0] if row else 0
        records = db.execute(
            "SELECT id, modified, sortindex, payload, parentid, predecessorid FROM items "
            "WHERE userid = ? AND collection = ? AND ttl > ? ORDER BY modified DESC, id DESC "
            "LIMIT ? OFFSET ?", (userid, cid, centis // 100, limit + 1, offset)).fetchall()
        encoded = []
        for item_id, modified, sortindex, payload, parentid, predecessorid in records[:limit]:
            text = '{"id": ' + _encode(item_id)
            if modified is not None:
                text += ', "modified": ' + stamp_text(modified)
            if sortindex is not None:
                text += ', "sortindex": ' + str(sortindex)
            if payload is not None:
                text += ', "payload": ' + _encode(payload)
            if parentid is not None:
                text += ', "parentid": ' + _encode(parentid)
            if predecessorid is not None:
                text += ', "predecessorid": ' + _encode(predecessorid)
            encoded.append(text + "}")
        headers = [JSON_TYPE, ("X-Weave-Records", str(len(encoded)))]
        if len(records) > limit:
            headers.append(("X-Weave-Next-Offset", str(offset + limit)))
        return "200 OK", "[" + ", ".join(encoded) + "]", self.read_stamps(headers, stamp, centis)

    # -- writes ---------------------------------------------------------------

    def lock_user(self, db, userid, cid):
        """BEGIN IMMEDIATE and the user's row (created on the first write)."""
        db.execute("BEGIN IMMEDIATE")
        row = db.execute(LOCK_USER, (cid, userid)).fetchone()
        if row is None:
            db.execute(ENSURE_USER, (userid, 0))
            row = db.execute(LOCK_USER, (cid, userid)).fetchone()
        return row

    def write_items(self, db, userid, cid, writes, stamp, now_seconds):
        """INSERT new ids, UPDATE stored ones (the fields sent); returns the usage change."""
        ids = list(writes)
        if len(ids) == 1:
            rows = db.execute(EXISTING_ONE, (userid, cid, ids[0])).fetchall()
        else:
            rows = db.execute(EXISTING.format(", ".join("?" * len(ids))),
                              (userid, cid, *ids)).fetchall()
        stored = {item_id: size for item_id, _modified, ttl, size in rows if ttl > now_seconds}
        inserts, updates, delta = [], [], 0
        for item_id, item in writes.items():
            payload = item.get("payload")
            size = len(payload.encode("utf-8")) if payload is not None else 0
            if item_id not in stored:
                ttl = item.get("ttl")
                inserts.append((userid, cid, item_id, item.get("sortindex"), None, None, stamp,
                                payload or "", size,
                                now_seconds + ttl if ttl is not None else NEVER_EXPIRES))
                delta += size
            else:
                updates.append((item.get("sortindex"), stamp, payload, size, userid, cid,
                                item_id))
                delta += size - stored[item_id]
        if inserts:
            db.executemany(INSERT_ITEM, inserts)
        if updates:
            db.executemany(UPDATE_ITEM, updates)
        return delta

    def record(self, db, userid, cid, collection_ts, stamp, delta):
        if collection_ts is None:
            db.execute("INSERT INTO user_collections (userid, collection, modified) "
                       "VALUES (?, ?, ?)", (userid, cid, stamp))
        else:
            db.execute("UPDATE user_collections SET modified=? WHERE userid = ? "
                       "AND collection = ?", (stamp, userid, cid))
        db.execute("UPDATE storage_users SET last_modified=?, usage_bytes=(usage_bytes + ?) "
                   "WHERE userid = ?", (stamp, delta, userid))

    def put_item(self, userid, collection, item_id, environ, centis):
        cid = self.collection_id(collection)
        item = read_json(environ)
        if not isinstance(item, dict) or not isinstance(item.get("payload", ""), str):
            raise HTTPError("400 Bad Request", "8")
        db = self.db()
        try:
            row = self.lock_user(db, userid, cid)
            stamp = max(centis, row[0] + 1, (row[4] or 0) + 1)
            delta = self.write_items(db, userid, cid, {item_id: item}, stamp, centis // 100)
            self.record(db, userid, cid, row[4], stamp, delta)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        headers = [JSON_TYPE, ("X-Last-Modified", stamp_text(stamp)),
                   ("X-Weave-Timestamp", stamp_text(stamp))]
        return "200 OK", stamp_text(stamp), headers

    def post_collection(self, userid, collection, environ, centis):
        cid = self.collection_id(collection)
        objects = read_json(environ)
        if not isinstance(objects, list) or len(objects) > 100:
            raise HTTPError("400 Bad Request", "8")
        writes = {}
        for obj in objects:
            if not (isinstance(obj, dict) and isinstance(obj.get("id"), str)
                    and isinstance(obj.get("payload", ""), str)):
                raise HTTPError("400 Bad Request", "8")
            writes[obj["id"]] = obj
        query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
        batch, commit = query.get("batch"), "commit" in query
        success = "[" + ", ".join(_encode(item_id) for item_id in writes) + "]"
        db = self.db()
        if batch is None or (batch == "true" and commit):
            raise HTTPError("400 Bad Request", "1")  # only what the benchmark sends
        if not commit:
            row = db.execute(COLLECTION_STAMP, (userid, cid)).fetchone()
            stamp = row[0] if row else 0
            if batch == "true":
                batch = secrets.token_hex(12)
                self.transaction(db, userid, cid, lambda _row: db.execute(
                    "INSERT INTO batches (id, userid, collection, created, expires, records, "
                    "payload_bytes) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (batch, userid, cid, centis, centis + BATCH_LIFETIME_CS, 0, 0)))
            elif not _BATCH_ID.match(batch):
                raise HTTPError("400 Bad Request", "0")
            self.transaction(db, userid, cid,
                             lambda _row: self.stage(db, userid, cid, batch, writes, centis))
            body = f'{{"batch": "{batch}", "success": {success}, "failed": {{}}}}'
            headers = [JSON_TYPE, ("X-Last-Modified", stamp_text(stamp))]
            return "202 Accepted", body, headers
        if not _BATCH_ID.match(batch):
            raise HTTPError("400 Bad Request", "0")
        stamp = self.transaction(db, userid, cid, lambda row: self.commit(
            db, userid, cid, batch, writes, row, centis))
        body = f'{{"modified": {stamp_text(stamp)}, "success": {success}, "failed": {{}}}}'
        headers = [JSON_TYPE, ("X-Last-Modified", stamp_text(stamp)),
                   ("X-Weave-Timestamp", stamp_text(stamp))]
        return "200 OK", body, headers

    def transaction(self, db, userid, cid, work):
        try:
            row = self.lock_user(db, userid, cid)
            result = work(row)
            db.execute("COMMIT")
            return result
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def open_batch(self, db, batch, userid, cid, centis, writes):
        row = db.execute("SELECT userid, collection, expires, records, payload_bytes "
                         "FROM batches WHERE id = ?", (batch,)).fetchone()
        if row is None or row[0] != userid or row[1] != cid or row[2] <= centis:
            raise HTTPError("400 Bad Request", "0")
        staged = dict(db.execute(STAGED_SIZES.format(", ".join("?" * len(writes))),
                                 (batch, *writes)).fetchall()) if writes else {}
        return row, staged

    def stage(self, db, userid, cid, batch, writes, centis):
        row, staged = self.open_batch(db, batch, userid, cid, centis, writes)
        inserts, records, total = [], row[3], row[4]
        for item_id, item in writes.items():
            payload = item.get("payload")
            size = len(payload.encode("utf-8")) if payload is not None else 0
            if item_id in staged:
                db.execute("UPDATE batch_items SET sortindex=coalesce(?, sortindex), "
                           "payload=coalesce(?, payload), payload_size=? "
                           "WHERE batch = ? AND id = ?",
                           (item.get("sortindex"), payload, size, batch, item_id))
                total += size - staged[item_id]
                continue
            inserts.append((batch, item_id, item.get("sortindex"), None, None, payload, size,
                            item.get("ttl")))
            records += 1
            total += size
        if inserts:
            db.executemany("INSERT INTO batch_items (batch, id, sortindex, parentid, "
                           "predecessorid, payload, payload_size, ttl) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", inserts)
        db.execute("UPDATE batches SET records=?, payload_bytes=? WHERE id = ?",
                   (records, total, batch))

    def commit(self, db, userid, cid, batch, writes, user_row, centis):
        self.open_batch(db, batch, userid, cid, centis, writes)
        stamp = max(centis, user_row[0] + 1, (user_row[4] or 0) + 1)
        pending = dict(writes)
        delta, after = 0, None
        while True:
            if after is None:
                rows = db.execute(STAGED_FIRST, (batch, COMMIT_CHUNK)).fetchall()
            else:
                rows = db.execute(STAGED_NEXT, (batch, after, COMMIT_CHUNK)).fetchall()
            if not rows:
                break
            chunk = {}
            for item_id, payload, sortindex, _parentid, _predecessorid, ttl in rows:
                fields = {name: value for name, value in (
                    ("payload", payload), ("sortindex", sortindex), ("ttl", ttl))
                    if value is not None}
                fields.update(pending.pop(item_id, {}))
                chunk[item_id] = fields
            delta += self.write_items(db, userid, cid, chunk, stamp, centis // 100)
            after = rows[-1][0]
            if len(rows) < COMMIT_CHUNK:
                break
        if pending:
            delta += self.write_items(db, userid, cid, pending, stamp, centis // 100)
        db.execute("DELETE FROM batch_items WHERE batch = ?", (batch,))
        db.execute("DELETE FROM batches WHERE id = ?", (batch,))
        self.record(db, userid, cid, user_row[4], stamp, delta)
        return stamp


def read_json(environ):
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        return json.loads(environ["wsgi.input"].read(length))
    except ValueError:
        raise HTTPError("400 Bad Request", "6") from None


def make_app():
    return Floor15App(os.environ["FLOOR15_DB"], os.environ["FLOOR15_SECRET"],
                      os.environ.get("FLOOR15_HOSTS", "").split())


application = make_app() if "FLOOR15_DB" in os.environ else None
