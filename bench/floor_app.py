"""The benchmark's floor: the four benchmarked requests, standard library only.

This is not a Sync server. It answers exactly the requests that
``bench/run.py`` measures, doing the SQL those requests need on the same data
model as syncserver's SQL backend, with nothing else in the way: no
framework, no ORM, no routing table, plain :mod:`sqlite3` in WAL mode and
credentials cached in a dict after their first check. Whatever syncserver
spends beyond this, per request, is the price of its framework and its code.

Requests answered (``<u>`` is the user, ``<c>`` a collection):

- ``GET /1.1/<u>/info/collections`` -> ``{"<c>": 1370000000.10, ...}``
- ``GET /1.1/<u>/storage/<c>?full=1&limit=N&sort=newest`` (also ``oldest``,
  ``index``, ``newer``, ``older``, ``offset``; ``full`` absent gives ids)
- ``POST /1.1/<u>/storage/<c>`` with a JSON list of WBOs: one transaction,
  every item stored, the collection's timestamp advanced ->
  ``{"modified": ..., "success": [...], "failed": {...}}``
- ``PUT /1.1/<u>/storage/<c>/<id>`` with one WBO -> the new timestamp

Every answer carries ``X-Weave-Timestamp``. Writes keep the protocol's
rules: a user's stamps never go backwards (``storage_users.last_modified``),
fields not sent keep their stored values, an expired item is replaced whole,
a new item without ``ttl`` never expires, ``X-If-Unmodified-Since`` is
checked inside the write transaction.

Run it with any WSGI server; the database path comes from ``FLOOR_DB``::

    FLOOR_DB=/tmp/floor.db python bench/floor_app.py init alice secret
    FLOOR_DB=/tmp/floor.db gunicorn --chdir bench floor_app:application
"""

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import sqlite3
import sys
import threading
import time
from urllib.parse import parse_qsl

NEVER_EXPIRES = 9_999_999_999
MAX_ITEMS = 100
MAX_BATCH_BYTES = 1024 * 1024
MAX_PAYLOAD_BYTES = 256 * 1024
PBKDF2_ITERATIONS = 200_000

FIXED_COLLECTIONS = {
    "clients": 1, "crypto": 2, "forms": 3, "history": 4, "keys": 5, "meta": 6,
    "bookmarks": 7, "prefs": 8, "tabs": 9, "passwords": 10, "addons": 11,
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    userid INTEGER PRIMARY KEY AUTOINCREMENT,
    username VARCHAR(32) NOT NULL UNIQUE,
    password_hash VARCHAR(255) NOT NULL,
    email VARCHAR(255),
    status SMALLINT NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS collections (
    id INTEGER NOT NULL PRIMARY KEY,
    name VARCHAR(32) NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS user_collections (
    userid BIGINT NOT NULL,
    collection INTEGER NOT NULL,
    modified BIGINT NOT NULL,
    PRIMARY KEY (userid, collection)
);
CREATE TABLE IF NOT EXISTS storage_users (
    userid BIGINT NOT NULL PRIMARY KEY,
    last_modified BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    userid BIGINT NOT NULL,
    collection INTEGER NOT NULL,
    id VARCHAR(64) NOT NULL,
    sortindex INTEGER,
    parentid VARCHAR(64),
    predecessorid VARCHAR(64),
    modified BIGINT,
    payload TEXT,
    payload_size INTEGER NOT NULL DEFAULT 0,
    ttl BIGINT NOT NULL,
    PRIMARY KEY (userid, collection, id)
);
CREATE INDEX IF NOT EXISTS items_modified_idx ON items (userid, collection, modified, id, ttl);
CREATE INDEX IF NOT EXISTS items_sortindex_idx ON items (userid, collection, sortindex, id, ttl);
CREATE INDEX IF NOT EXISTS items_usage_idx ON items (userid, collection, payload_size, ttl);
CREATE INDEX IF NOT EXISTS items_expiry_idx ON items (ttl);
"""

INSERT_ITEM = (
    "INSERT OR REPLACE INTO items (userid, collection, id, sortindex, parentid, predecessorid, "
    "modified, payload, payload_size, ttl) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")

# id breaks ties (deterministic paging); the indexes end with it, so no sort step.
SORTS = {
    "newest": " ORDER BY modified DESC, id DESC",
    "oldest": " ORDER BY modified ASC, id ASC",
    "index": " ORDER BY sortindex DESC, id ASC",
}

_ITEM_ID = re.compile(r"[\x20-\x2e\x30-\x7e]{1,64}\Z")
_COLLECTION = re.compile(r"[a-zA-Z0-9._-]{1,32}\Z")
_encode = json.encoder.encode_basestring_ascii

JSON_TYPE = ("Content-Type", "application/json")


class HTTPError(Exception):
    def __init__(self, status, body='"error"', headers=()):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = list(headers)


def now_centiseconds():
    return round(time.time() * 100)


def stamp(centiseconds):
    """Centiseconds -> the protocol's two-decimal text."""
    whole, frac = divmod(centiseconds, 100)
    return f"{whole}.{frac:02d}"


def hash_password(password, salt=None):
    salt = salt or os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, PBKDF2_ITERATIONS)
    return f"pbkdf2_sha256${PBKDF2_ITERATIONS}${salt.hex()}${digest.hex()}"


def verify_password(password, stored):
    try:
        _scheme, iterations, salt, digest = stored.split("$")
        computed = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"),
                                       bytes.fromhex(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed.hex(), digest)


def connect(path):
    connection = sqlite3.connect(path, timeout=15, isolation_level=None,
                                 check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA busy_timeout=15000")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def init_db(path, username=None, password=None, email=None):
    """Create the tables (and a user); returns the user's id or None."""
    connection = connect(path)
    try:
        connection.executescript(SCHEMA)
        connection.executemany("INSERT OR IGNORE INTO collections (id, name) VALUES (?, ?)",
                               [(cid, name) for name, cid in FIXED_COLLECTIONS.items()])
        if username is None:
            return None
        cursor = connection.execute(
            "INSERT INTO users (username, password_hash, email) VALUES (?, ?, ?)",
            (username, hash_password(password), email))
        return cursor.lastrowid
    finally:
        connection.close()


class FloorApp:
    """The WSGI application; one SQLite connection per thread."""

    def __init__(self, path):
        self.path = path
        self.local = threading.local()
        self.credentials = {}  # Authorization header -> (username, userid)
        self.collection_ids = {}
        self.collection_names = {}
        self.lock = threading.Lock()

    # -- plumbing ----------------------------------------------------------

    def db(self):
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = self.local.connection = connect(self.path)
        return connection

    def __call__(self, environ, start_response):
        now = now_centiseconds()
        try:
            status, body, headers = self.dispatch(environ, now)
        except HTTPError as error:
            status, body, headers = error.status, error.body, [JSON_TYPE] + error.headers
        except sqlite3.OperationalError:
            status, body, headers = "503 Service Unavailable", '"database unavailable"', \
                [JSON_TYPE, ("Retry-After", "60")]
        data = body.encode("ascii") if isinstance(body, str) else body
        if not any(name == "X-Weave-Timestamp" for name, _ in headers):
            headers.append(("X-Weave-Timestamp", stamp(now)))
        headers.append(("Content-Length", str(len(data))))
        start_response(status, headers)
        return [data]

    def dispatch(self, environ, now):
        parts = environ.get("PATH_INFO", "").strip("/").split("/")
        method = environ["REQUEST_METHOD"]
        if len(parts) < 3 or parts[0] not in ("1.1", "1.0", "1"):
            raise HTTPError("404 Not Found")
        userid = self.authenticate(environ, parts[1])
        kind = parts[2]
        if kind == "info" and len(parts) == 4 and parts[3] == "collections" and method == "GET":
            return self.info_collections(userid)
        if kind == "storage" and len(parts) == 4:
            collection = parts[3]
            if method == "GET":
                return self.get_collection(userid, collection, environ, now)
            if method == "POST":
                return self.post_collection(userid, collection, environ, now)
        if kind == "storage" and len(parts) == 5 and method == "PUT":
            return self.put_item(userid, parts[3], parts[4], environ, now)
        raise HTTPError("404 Not Found")

    def authenticate(self, environ, path_username):
        header = environ.get("HTTP_AUTHORIZATION")
        if not header:
            raise HTTPError("401 Unauthorized",
                            headers=[("WWW-Authenticate", 'Basic realm="Sync"')])
        known = self.credentials.get(header)
        if known is None:
            known = self._check_credentials(header)
        username, userid = known
        if username != path_username:
            raise HTTPError("401 Unauthorized")
        return userid

    def _check_credentials(self, header):
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "basic":
                raise ValueError(scheme)
            username, colon, password = base64.b64decode(token.strip(), validate=True) \
                .decode("utf-8").partition(":")
            if not colon:
                raise ValueError("no colon")
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise HTTPError("401 Unauthorized") from None
        row = self.db().execute(
            "SELECT userid, password_hash FROM users WHERE username = ? AND status = 1",
            (username,)).fetchone()
        if row is None or not verify_password(password, row[1]):
            raise HTTPError("401 Unauthorized")
        known = (username, row[0])
        self.credentials[header] = known
        return known

    def collection_id(self, name, create=False):
        cid = self.collection_ids.get(name)
        if cid is not None:
            return cid
        if not _COLLECTION.match(name):
            raise HTTPError("400 Bad Request" if create else "404 Not Found", "8")
        db = self.db()
        row = db.execute("SELECT id FROM collections WHERE name = ?", (name,)).fetchone()
        if row is None:
            if not create:
                return None
            db.execute("INSERT OR IGNORE INTO collections (id, name) "
                       "SELECT max(max(id) + 1, 100), ? FROM collections", (name,))
            row = db.execute("SELECT id FROM collections WHERE name = ?", (name,)).fetchone()
        with self.lock:
            self.collection_ids[name] = row[0]
            self.collection_names[row[0]] = name
        return row[0]

    def collection_name(self, cid):
        name = self.collection_names.get(cid)
        if name is None:
            row = self.db().execute("SELECT name FROM collections WHERE id = ?", (cid,)).fetchone()
            name = row[0]
            with self.lock:
                self.collection_ids[name] = cid
                self.collection_names[cid] = name
        return name

    # -- the four requests -------------------------------------------------

    def info_collections(self, userid):
        rows = self.db().execute(
            "SELECT collection, modified FROM user_collections WHERE userid = ?",
            (userid,)).fetchall()
        body = "{" + ", ".join(f"{_encode(self.collection_name(cid))}: {stamp(modified)}"
                               for cid, modified in rows) + "}"
        return "200 OK", body, [JSON_TYPE, ("X-Weave-Records", str(len(rows)))]

    def get_collection(self, userid, collection, environ, now):
        cid = self.collection_id(collection)
        query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
        full = "full" in query
        records = []
        if cid is not None:
            columns = ("id, modified, sortindex, payload, parentid, predecessorid"
                       if full else "id")
            sql = [f"SELECT {columns} FROM items WHERE userid = ? AND collection = ? AND ttl > ?"]
            params = [userid, cid, now // 100]
            try:
                for name, op in (("newer", ">"), ("older", "<")):
                    if name in query:
                        sql.append(f" AND modified {op} ?")
                        params.append(round(float(query[name]) * 100))
                order = SORTS.get(query.get("sort"))
                if order is None and ("limit" in query or "offset" in query):
                    order = " ORDER BY id"
                sql.append(order or "")
                if "limit" in query or "offset" in query:
                    sql.append(" LIMIT ? OFFSET ?")
                    params.append(int(query.get("limit", -1)))
                    params.append(int(query.get("offset", 0)))
            except ValueError:
                raise HTTPError("400 Bad Request", "8") from None
            records = self.db().execute("".join(sql), params).fetchall()
        if full:
            encoded = []
            for item_id, modified, sortindex, payload, parentid, predecessorid in records:
                parts = [f'"id": {_encode(item_id)}']
                if modified is not None:
                    parts.append(f'"modified": {stamp(modified)}')
                if sortindex is not None:
                    parts.append(f'"sortindex": {sortindex}')
                if payload is not None:
                    parts.append(f'"payload": {_encode(payload)}')
                if parentid is not None:
                    parts.append(f'"parentid": {_encode(parentid)}')
                if predecessorid is not None:
                    parts.append(f'"predecessorid": {_encode(predecessorid)}')
                encoded.append("{" + ", ".join(parts) + "}")
        else:
            encoded = [_encode(row[0]) for row in records]
        body = "[" + ", ".join(encoded) + "]"
        return "200 OK", body, [JSON_TYPE, ("X-Weave-Records", str(len(records)))]

    def post_collection(self, userid, collection, environ, now):
        objects = read_json(environ)
        if not isinstance(objects, list):
            raise HTTPError("400 Bad Request", "8")
        rows, success, failed = [], [], {}
        total = 0
        for index, obj in enumerate(objects):
            try:
                item = parse_wbo(obj)
            except ValueError as error:
                key = obj.get("id") if isinstance(obj, dict) and isinstance(obj.get("id"), str) \
                    else ""
                failed[key] = [str(error)]
                continue
            if index >= MAX_ITEMS:
                failed[item[0]] = ["retry wbo"]
                continue
            total += item[4]
            if total >= MAX_BATCH_BYTES:
                failed[item[0]] = ["retry bytes"]
                continue
            rows.append(item)
            success.append(item[0])
        since = unmodified_since(environ)
        timestamp = self.write(userid, collection, rows, now, since) if rows else now
        body = (f'{{"modified": {stamp(timestamp)}, "success": {json.dumps(success)}, '
                f'"failed": {json.dumps(failed)}}}')
        return "200 OK", body, [JSON_TYPE, ("X-Weave-Timestamp", stamp(timestamp))]

    def put_item(self, userid, collection, item_id, environ, now):
        obj = read_json(environ)
        if not isinstance(obj, dict) or not _ITEM_ID.match(item_id):
            raise HTTPError("400 Bad Request", "8")
        obj["id"] = item_id
        try:
            row = parse_wbo(obj)
        except ValueError:
            raise HTTPError("400 Bad Request", "8") from None
        timestamp = self.write(userid, collection, [row], now, unmodified_since(environ))
        body = stamp(timestamp)
        if row[5] is None:  # metadata only: answer the item's own (unchanged) modified
            stored = self.db().execute(
                "SELECT modified FROM items WHERE userid = ? AND collection = ? AND id = ?",
                (userid, self.collection_id(collection), item_id)).fetchone()
            body = "null" if stored is None or stored[0] is None else stamp(stored[0])
        return "200 OK", body, [JSON_TYPE, ("X-Weave-Timestamp", stamp(timestamp))]

    def write(self, userid, collection, rows, now, since):
        """Store ``rows`` in one transaction; returns the stamp they were given."""
        cid = self.collection_id(collection, create=True)
        db = self.db()
        db.execute("BEGIN IMMEDIATE")
        try:
            if since is not None:
                current = db.execute(
                    "SELECT modified FROM user_collections WHERE userid = ? AND collection = ?",
                    (userid, cid)).fetchone()
                if current is not None and current[0] > since:
                    raise HTTPError("412 Precondition Failed", '"precondition failed"')
            last = db.execute("SELECT last_modified FROM storage_users WHERE userid = ?",
                              (userid,)).fetchone()
            timestamp = now if last is None else max(now, last[0] + 1)
            seconds = now // 100
            self.store_items(db, userid, cid, rows, timestamp, seconds)
            if any(row[5] is not None for row in rows):
                db.execute("INSERT INTO user_collections (userid, collection, modified) "
                           "VALUES (?, ?, ?) ON CONFLICT (userid, collection) "
                           "DO UPDATE SET modified = excluded.modified", (userid, cid, timestamp))
                db.execute("INSERT INTO storage_users (userid, last_modified) VALUES (?, ?) "
                           "ON CONFLICT (userid) DO UPDATE SET "
                           "last_modified = excluded.last_modified", (userid, timestamp))
            else:
                timestamp = now  # metadata only: nothing was stamped
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return timestamp

    def store_items(self, db, userid, cid, rows, timestamp, seconds):
        """New (or expired) items are inserted whole; stored ones get only the fields sent.

        One SELECT finds which ids are stored and live; then one executemany
        INSERT, and one executemany UPDATE per set of fields sent. An UPDATE
        sets only the columns sent, so SQLite maintains only the indexes
        over those columns.
        """
        merged = {}  # duplicate ids: applied in order, the last value of each field wins
        for item_id, sortindex, parentid, predecessorid, size, payload, ttl in rows:
            fields = merged.get(item_id)
            if fields is None:
                merged[item_id] = [sortindex, parentid, predecessorid, size, payload, ttl]
                continue
            for index, value in enumerate((sortindex, parentid, predecessorid, None, payload,
                                           ttl)):
                if value is not None:
                    fields[index] = value
            if payload is not None:
                fields[3] = size
        marks = ",".join("?" * len(merged))
        live = {item_id for item_id, ttl in db.execute(
            f"SELECT id, ttl FROM items WHERE userid = ? AND collection = ? AND id IN ({marks})",
            (userid, cid, *merged)) if ttl > seconds}
        inserts, updates = [], {}
        for item_id, (sortindex, parentid, predecessorid, size, payload, ttl) in merged.items():
            if item_id not in live:
                inserts.append((userid, cid, item_id, sortindex, parentid, predecessorid,
                                timestamp if payload is not None else None, payload,
                                size if payload is not None else 0,
                                NEVER_EXPIRES if ttl is None else seconds + ttl))
                continue
            columns, values = [], []
            for name, value in (("sortindex", sortindex), ("parentid", parentid),
                                ("predecessorid", predecessorid)):
                if value is not None:
                    columns.append(name)
                    values.append(value)
            if payload is not None:
                columns += ("modified", "payload", "payload_size")
                values += (timestamp, payload, size)
            if ttl is not None:
                columns.append("ttl")
                values.append(seconds + ttl)
            if columns:
                values += (userid, cid, item_id)
                updates.setdefault(tuple(columns), []).append(values)
        if inserts:
            db.executemany(INSERT_ITEM, inserts)
        for columns, params in updates.items():
            db.executemany(update_statement(columns), params)


_UPDATES = {}


def update_statement(columns):
    statement = _UPDATES.get(columns)
    if statement is None:
        statement = _UPDATES[columns] = (
            "UPDATE items SET " + ", ".join(f"{name} = ?" for name in columns)
            + " WHERE userid = ? AND collection = ? AND id = ?")
    return statement


def read_json(environ):
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    data = environ["wsgi.input"].read(length) if length > 0 else b""
    try:
        return json.loads(data)
    except ValueError:
        raise HTTPError("400 Bad Request", "6") from None


def unmodified_since(environ):
    value = environ.get("HTTP_X_IF_UNMODIFIED_SINCE")
    if value is None:
        return None
    try:
        return round(float(value) * 100)
    except ValueError:
        raise HTTPError("400 Bad Request", '"Invalid X-If-Unmodified-Since"') from None


def parse_wbo(obj):
    """Validate one WBO; returns (id, sortindex, parentid, predecessorid, size, payload, ttl)."""
    if not isinstance(obj, dict):
        raise ValueError("invalid wbo")
    item_id = obj.get("id")
    if not isinstance(item_id, str) or not _ITEM_ID.match(item_id):
        raise ValueError("invalid id")
    payload = obj.get("payload")
    size = 0
    if payload is not None:
        if not isinstance(payload, str):
            raise ValueError("invalid payload")
        size = len(payload.encode("utf-8"))
        if size > MAX_PAYLOAD_BYTES:
            raise ValueError("payload too large")
    sortindex = obj.get("sortindex")
    if sortindex is not None:
        if isinstance(sortindex, bool) or not isinstance(sortindex, (int, float, str)):
            raise ValueError("invalid sortindex")
        try:
            sortindex = int(float(sortindex))
        except (ValueError, OverflowError):
            raise ValueError("invalid sortindex") from None
        if not -999_999_999 <= sortindex <= 999_999_999:
            raise ValueError("invalid sortindex")
    ttl = obj.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int)
                            or not 0 <= ttl <= 31_536_000):
        raise ValueError("invalid ttl")
    parentid = obj.get("parentid")
    predecessorid = obj.get("predecessorid")
    for value in (parentid, predecessorid):
        if value is not None and (not isinstance(value, str) or len(value) > 64):
            raise ValueError("invalid parentid")
    return item_id, sortindex, parentid, predecessorid, size, payload, ttl


def _make_application():
    path = os.environ.get("FLOOR_DB")
    return FloorApp(path) if path else None


application = _make_application()


def app_factory(global_conf, db=None, **_settings):
    """``paste.app_factory`` for ``paster serve`` (bench/run.py under waitress): ``db = path``."""
    return FloorApp(db or os.environ["FLOOR_DB"])


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "init" or not os.environ.get("FLOOR_DB"):
        sys.exit("usage: FLOOR_DB=path python floor_app.py init USERNAME PASSWORD")
    print(init_db(os.environ["FLOOR_DB"], sys.argv[2], sys.argv[3]))
