"""Current Firefox's whole Sync flow, scripted over HTTP: a reusable driver and the flow itself.

:class:`Device` does what desktop Firefox does against a tokenserver and its
storage nodes, with nothing but the standard library's ``http.client``:

- ``GET <tokenserver>/1.0/sync/1.5`` with ``Authorization: Bearer <JWT>``
  (minted by the local fake accounts server, tests/fxa_server.py) and
  ``X-KeyID: <keys_changed_at>-<b64url(client state)>``;
- every storage request to ``api_endpoint + "/..."`` signed with Hawk
  (:func:`syncserver.testing.sync15_client.hawk_header`, no payload hash, as
  Firefox), ``Content-Type: text/plain`` on writes, as desktop sends it;
- uploads as desktop's PostQueue: ``batch=true``, appends with the batch id,
  ``commit=true`` on the last request of a batch, every request within the
  ``max_post_*`` limits and every batch within the ``max_total_*`` limits of
  ``info/configuration`` (byte limits exclusive, as desktop treats them);
  ``X-If-Unmodified-Since`` on every POST;
- downloads as desktop's ``getBatched``: ``full=1&limit=...`` following
  ``X-Weave-Next-Offset``, each page after the first with
  ``X-If-Unmodified-Since`` = the first page's ``X-Last-Modified``.

Every answer's status is checked where it is read, and so is the data:
counts, ids, payloads, and timestamps that only move forward.

:func:`run_flow` is the whole story on one deployment (first device, second
device, key change, storage node out of service). tests/e2e/test_firefox_flow.py
runs it against ``paster serve`` and against a tokenserver with two
storage-node processes, tests/deploy/test_apache_firefox_flow.py against
Apache mod_wsgi under ``/sync/``.
"""

import base64
import dataclasses
import hashlib
import http.client
import json
import random
import time
import urllib.parse
from decimal import Decimal

from syncserver.testing.sync15_client import Credentials, hawk_header
from tests.e2e.conftest import _closed_by_peer
from tests.fxa_server import OLDSYNC_SCOPE

#: Desktop Firefox's page size for full downloads (``DEFAULT_DOWNLOAD_BATCH_SIZE``).
DOWNLOAD_PAGE = 1000
#: Where the first device starts: 5,000 bookmarks and 20,000 history records.
BOOKMARKS = 5_000
HISTORY = 20_000


class FlowError(AssertionError):
    """An answer that current Firefox would not accept, with the request that got it."""


# --- HTTP --------------------------------------------------------------------------------


@dataclasses.dataclass
class Answer:
    method: str
    url: str
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        return json.loads(self.body, parse_float=Decimal)

    def header(self, name):
        return self.headers.get(name)

    def timestamp(self, name="X-Last-Modified"):
        value = self.headers.get(name)
        if value is None:
            raise FlowError(f"no {name} on {self!r}")
        return Decimal(value)

    def __repr__(self):
        return f"<{self.method} {self.url} -> {self.status} {self.body[:300]!r}>"


class HTTP:
    """Keep-alive connections, one per host and port, reopened when the server closed one."""

    def __init__(self, timeout=60):
        self.timeout = timeout
        self.connections = {}
        self.requests = 0

    def request(self, method, url, body=None, headers=None):
        parts = urllib.parse.urlsplit(url)
        key = (parts.hostname, parts.port)
        connection = self.connections.get(key)
        if connection is None or _closed_by_peer(connection.sock):
            if connection is not None:
                connection.close()
            connection = http.client.HTTPConnection(parts.hostname, parts.port,
                                                    timeout=self.timeout)
            self.connections[key] = connection
        target = parts.path + ("?" + parts.query if parts.query else "")
        try:
            connection.request(method, target, body=body, headers=headers or {})
            raw = connection.getresponse()
            data = raw.read()
        except BaseException:
            connection.close()
            del self.connections[key]
            raise
        self.requests += 1
        return Answer(method, url, raw.status, raw.headers, data)

    def close(self):
        for connection in self.connections.values():
            connection.close()
        self.connections.clear()


def expect(answer, status):
    if answer.status != status:
        raise FlowError(f"expected {status}, got {answer!r}")
    return answer


# --- the account and its keys ---------------------------------------------------------


@dataclasses.dataclass
class Account:
    """A Mozilla account as the accounts server knows it: its id, generation and Sync keys."""

    fxa_uid: str
    generation: int
    keys_changed_at: int
    client_state: str  # 32 hex digits: the fingerprint of the Sync key

    @classmethod
    def new(cls, seed):
        now_ms = int(time.time() * 1000) - 60_000
        return cls(hashlib.md5(f"flow-{seed}".encode()).hexdigest(), now_ms, now_ms,
                   _client_state(f"{seed}-0"))

    def key_id(self, keys_changed_at=None, client_state=None):
        state = bytes.fromhex(client_state or self.client_state)
        fingerprint = base64.urlsafe_b64encode(state).decode("ascii").rstrip("=")
        return f"{keys_changed_at or self.keys_changed_at}-{fingerprint}"

    def change_keys(self, seed):
        """A password reset: new generation, keys changed now, a new client state."""
        now_ms = max(int(time.time() * 1000), self.keys_changed_at + 1)
        return dataclasses.replace(self, generation=now_ms, keys_changed_at=now_ms,
                                   client_state=_client_state(seed))


def _client_state(seed):
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


# --- one Firefox ------------------------------------------------------------------------


class Device:
    """One Firefox profile signed in to ``account``, syncing through ``tokenserver_url``.

    ``tokenserver_url`` is what ``identity.sync.tokenserver.uri`` holds
    (``<server>/1.0/sync/1.5``). ``last_sync`` keeps, per collection, the
    newest ``modified`` this device has seen (what it sends as ``newer=``).
    """

    def __init__(self, name, tokenserver_url, fxa, account, http_client=None):
        self.name = name
        self.tokenserver_url = tokenserver_url
        self.fxa = fxa
        self.account = account
        self.http = http_client or HTTP()
        self.token = None
        self.credentials = None
        self.config = None
        self.last_sync = {}
        self.last_modified_seen = Decimal(0)
        self.posts = 0

    # --- tokenserver ---------------------------------------------------------------

    def request_token(self, account=None):
        """``GET /1.0/sync/1.5`` as Firefox sends it; the raw answer."""
        account = account or self.account
        access_token = self.fxa.mint({"sub": account.fxa_uid,
                                      "fxa-generation": account.generation,
                                      "scope": OLDSYNC_SCOPE})
        return self.http.request("GET", self.tokenserver_url, headers={
            "Authorization": f"Bearer {access_token}", "X-KeyID": account.key_id(),
            "Accept": "application/json"})

    def sign_in(self):
        """Get a token and remember it; returns the token body. A new endpoint resets state."""
        answer = expect(self.request_token(), 200)
        token = answer.json()
        for field, kind in (("id", str), ("key", str), ("uid", int), ("api_endpoint", str),
                            ("duration", int), ("hashed_fxa_uid", str)):
            if not isinstance(token.get(field), kind):
                raise FlowError(f"token field {field!r} missing or not {kind.__name__}: {token}")
        if not answer.header("X-Timestamp") or not answer.header("X-Timestamp").isdigit():
            raise FlowError(f"token response without an integer X-Timestamp: {answer!r}")
        if not token["api_endpoint"].endswith(f"/1.5/{token['uid']}"):
            raise FlowError(f"api_endpoint {token['api_endpoint']} does not end with the uid")
        if self.token is not None and self.token["api_endpoint"] != token["api_endpoint"]:
            self.last_sync = {}  # node reassignment: a fresh, empty server
            self.last_modified_seen = Decimal(0)
        self.token = token
        self.credentials = Credentials(token["id"], token["key"])
        return token

    @property
    def uid(self):
        return self.token["uid"]

    @property
    def endpoint(self):
        return self.token["api_endpoint"]

    @property
    def node(self):
        """The storage node's base URL (``api_endpoint`` without ``/1.5/<uid>``)."""
        return self.endpoint.rsplit("/1.5/", 1)[0]

    # --- storage ---------------------------------------------------------------------

    def storage(self, method, path, body=None, headers=None, endpoint=None, credentials=None):
        """A Hawk-signed request to ``<api_endpoint>/<path>`` (path with its query)."""
        url = f"{endpoint or self.endpoint}/{path}"
        all_headers = {"Accept": "application/json;q=0.9,*/*;q=0.2"}
        if body is not None:
            if not isinstance(body, bytes):
                body = json.dumps(body, separators=(",", ":")).encode("utf-8")
            all_headers["Content-Type"] = "text/plain"
        all_headers.update(headers or {})
        all_headers["Authorization"] = hawk_header(method, url, credentials or self.credentials)
        answer = self.http.request(method, url, body=body, headers=all_headers)
        self._check_weave_timestamp(answer)
        return answer

    @staticmethod
    def _check_weave_timestamp(answer):
        """Every answer says the server time; never before the X-Last-Modified it names
        (a write's T may be a centisecond ahead of the clock: §3.3, max(now, ...))."""
        stamp = answer.timestamp("X-Weave-Timestamp")
        last_modified = answer.header("X-Last-Modified")
        if last_modified is not None and stamp < Decimal(last_modified):
            raise FlowError(f"X-Weave-Timestamp {stamp} is before X-Last-Modified "
                            f"{last_modified}: {answer!r}")
        if answer.method in ("PUT", "POST", "DELETE") and answer.status == 200 \
                and stamp != Decimal(last_modified):
            raise FlowError(f"a write answered X-Weave-Timestamp {stamp} and X-Last-Modified "
                            f"{last_modified}: {answer!r}")

    def _saw(self, modified):
        self.last_modified_seen = max(self.last_modified_seen, Decimal(modified))

    def info_configuration(self):
        answer = expect(self.storage("GET", "info/configuration"), 200)
        config = answer.json()
        for key in ("max_request_bytes", "max_post_records", "max_post_bytes",
                    "max_total_records", "max_total_bytes", "max_record_payload_bytes"):
            if not isinstance(config.get(key), int) or config[key] <= 0:
                raise FlowError(f"info/configuration has no usable {key}: {config}")
        answer.timestamp()  # X-Last-Modified, any value
        self.config = config
        return config

    def info_collections(self):
        answer = expect(self.storage("GET", "info/collections"), 200)
        collections = {name: Decimal(str(value)) for name, value in answer.json().items()}
        if collections and answer.timestamp() != max(collections.values()):
            raise FlowError(f"info/collections X-Last-Modified is not its newest: {answer!r}")
        return collections

    def collection_counts(self):
        return expect(self.storage("GET", "info/collection_counts"), 200).json()

    # --- meta/global and crypto/keys ---------------------------------------------------

    def put_record(self, collection, record_id, payload, if_unmodified_since):
        """PUT one record with ``X-If-Unmodified-Since``; the raw answer."""
        return self.storage("PUT", f"storage/{collection}/{record_id}",
                            {"id": record_id, "payload": payload},
                            headers={"X-If-Unmodified-Since": str(if_unmodified_since)})

    def set_up_keys(self, sync_id):
        """A fresh server: meta/global and crypto/keys, each written only if still absent."""
        meta = json.dumps({"syncID": sync_id, "storageVersion": 5, "declined": [],
                           "engines": {"bookmarks": {"version": 2, "syncID": sync_id + "bm"},
                                       "history": {"version": 1, "syncID": sync_id + "hi"}}})
        written = {}
        for collection, record_id, payload in (("meta", "global", meta),
                                               ("crypto", "keys", encrypted_payload(sync_id))):
            answer = expect(self.put_record(collection, record_id, payload, 0), 200)
            modified = Decimal(answer.body.decode("ascii"))
            if answer.timestamp() != modified:
                raise FlowError(f"PUT answered {modified} but X-Last-Modified differs: {answer!r}")
            self._check_newer(modified)
            written[collection] = (modified, payload)
            # Written once: a second "only if absent" write is refused and changes nothing.
            expect(self.put_record(collection, record_id, payload + " ", 0), 412)
        return written

    def _check_newer(self, modified):
        if modified <= self.last_modified_seen:
            raise FlowError(f"a write at {modified} is not after {self.last_modified_seen}")
        self._saw(modified)

    def get_record(self, collection, record_id):
        answer = expect(self.storage("GET", f"storage/{collection}/{record_id}"), 200)
        record = answer.json()
        if answer.timestamp() != Decimal(str(record["modified"])):
            raise FlowError(f"X-Last-Modified is not the record's modified: {answer!r}")
        return record

    # --- uploads -------------------------------------------------------------------------

    def upload(self, collection, records):
        """Upload ``records`` (dicts with id and payload) as desktop's PostQueue does.

        Returns the commit timestamps, oldest first. Every request is checked:
        202 with the same batch id and the collection's unchanged
        X-Last-Modified while a batch is open, 200 with a newer ``modified``
        on commit, every id in ``success`` and none in ``failed``.
        """
        config = self.config or self.info_configuration()
        post_records, post_bytes = config["max_post_records"], config["max_post_bytes"]
        request_bytes = config["max_request_bytes"]
        total_records, total_bytes = config["max_total_records"], config["max_total_bytes"]
        last_modified = self.info_collections().get(collection, Decimal(0))
        state = {"batch": None, "batch_records": 0, "batch_bytes": 0,
                 "last_modified": last_modified}
        commits = []
        queued, queued_payload, queued_body = [], 0, 2

        def flush(commit):
            nonlocal queued, queued_payload, queued_body
            if not queued and not commit:
                return
            query = {"batch": state["batch"] or "true"}
            if commit:
                query["commit"] = "true"
            self.posts += 1
            answer = self.storage(
                "POST", f"storage/{collection}?{urllib.parse.urlencode(query)}", queued,
                headers={"X-If-Unmodified-Since": str(state["last_modified"])})
            body = expect(answer, 200 if commit else 202).json()
            ids = [record["id"] for record in queued]
            if body.get("failed") or sorted(body.get("success", ())) != sorted(ids):
                raise FlowError(f"not every record was taken: {answer!r}")
            if commit:
                modified = Decimal(str(body["modified"]))
                if answer.timestamp() != modified or modified <= state["last_modified"]:
                    raise FlowError(f"a commit at {modified} after {state['last_modified']}: "
                                    f"{answer!r}")
                self._check_newer(modified)
                commits.append(modified)
                state.update(batch=None, batch_records=0, batch_bytes=0, last_modified=modified)
            else:
                if state["batch"] is not None and body.get("batch") != state["batch"]:
                    raise FlowError(f"batch id changed from {state['batch']}: {answer!r}")
                if not body.get("batch") or "modified" in body:
                    raise FlowError(f"a 202 without a batch id, or with modified: {answer!r}")
                if answer.timestamp() != state["last_modified"]:
                    raise FlowError(f"X-Last-Modified moved while a batch is open: {answer!r}")
                state["batch"] = body["batch"]
            queued, queued_payload, queued_body = [], 0, 2

        for record in records:
            encoded = len(json.dumps(record, separators=(",", ":")).encode("utf-8")) + 1
            payload = len(record["payload"].encode("utf-8"))
            if payload >= config["max_record_payload_bytes"]:
                raise FlowError(f"record {record['id']} is too large for this server")
            batch_full = (state["batch_records"] + len(queued) + 1 > total_records
                          or state["batch_bytes"] + queued_payload + payload >= total_bytes)
            if batch_full:
                flush(commit=True)
            elif (len(queued) + 1 > post_records or queued_payload + payload >= post_bytes
                  or queued_body + encoded >= request_bytes):
                batch_records, batch_bytes = len(queued), queued_payload
                flush(commit=False)
                state["batch_records"] += batch_records
                state["batch_bytes"] += batch_bytes
            queued.append(record)
            queued_payload += payload
            queued_body += encoded
        flush(commit=True)
        self.last_sync[collection] = state["last_modified"]
        return commits

    # --- downloads -------------------------------------------------------------------------

    def download(self, collection, newer=None, limit=DOWNLOAD_PAGE, sort="oldest"):
        """Every record ``modified > newer`` (all with None), paging as desktop does.

        Returns ``{id: record}``; checks that pages neither repeat nor skip,
        that ``modified`` never goes backwards (``sort=oldest``) and stays in
        ``(newer, X-Last-Modified]``, and ``X-Weave-Records`` of every page.
        """
        query = {"full": "1", "limit": str(limit), "sort": sort}
        if newer is not None:
            query["newer"] = str(newer)
        records, first_last_modified, previous, pages = {}, None, None, 0
        offset = None
        while True:
            page_query = dict(query, **({"offset": offset} if offset else {}))
            headers = {}
            if first_last_modified is not None:
                headers["X-If-Unmodified-Since"] = str(first_last_modified)
            answer = expect(self.storage(
                "GET", f"storage/{collection}?{urllib.parse.urlencode(page_query)}",
                headers=headers), 200)
            pages += 1
            last_modified = answer.timestamp()
            if first_last_modified is None:
                first_last_modified = last_modified
            elif last_modified != first_last_modified:
                raise FlowError(f"X-Last-Modified changed while paging: {answer!r}")
            page = answer.json()
            if int(answer.header("X-Weave-Records")) != len(page) or len(page) > limit:
                raise FlowError(f"page of {len(page)} records, limit {limit}: {answer!r}")
            for record in page:
                modified = Decimal(str(record["modified"]))
                if record["id"] in records:
                    raise FlowError(f"record {record['id']} came twice while paging")
                if (newer is not None and modified <= Decimal(str(newer))) \
                        or modified > last_modified:
                    raise FlowError(f"record {record['id']} modified at {modified}, outside "
                                    f"({newer}, {last_modified}]")
                if previous is not None and (modified < previous if sort == "oldest"
                                             else modified > previous):
                    raise FlowError(f"sort={sort} put {modified} after {previous}")
                previous = modified
                records[record["id"]] = record
            offset = answer.header("X-Weave-Next-Offset")
            if offset is None:
                break
            if len(page) != limit:
                raise FlowError(f"a short page with a next offset: {answer!r}")
        self.last_sync[collection] = max(self.last_sync.get(collection, Decimal(0)),
                                         first_last_modified)
        self._saw(first_last_modified)
        return records, pages

    def download_everything(self, collection):
        """What the Rust client (Android, iOS) does: one GET with no limit, no paging.

        The server must answer every record at once (reference §3.9).
        """
        answer = expect(self.storage("GET", f"storage/{collection}?full=1",
                                     headers={"Accept": "application/json"}), 200)
        records = answer.json()
        if answer.header("X-Weave-Next-Offset") is not None \
                or int(answer.header("X-Weave-Records")) != len(records):
            raise FlowError(f"an unlimited GET was paged: {len(records)} records, "
                            f"X-Weave-Next-Offset {answer.header('X-Weave-Next-Offset')}")
        by_id = {record["id"]: record for record in records}
        if len(by_id) != len(records):
            raise FlowError("an unlimited GET repeated records")
        return by_id

    def close(self):
        self.http.close()


# --- records -------------------------------------------------------------------------------


def encrypted_payload(seed, size=None):
    """What Firefox stores: ``{"ciphertext", "IV", "hmac"}`` (random-looking, deterministic)."""
    rng = random.Random(seed)
    size = size or rng.randint(120, 600)
    return json.dumps({"ciphertext": base64.b64encode(rng.randbytes(size)).decode("ascii"),
                       "IV": base64.b64encode(rng.randbytes(16)).decode("ascii"),
                       "hmac": rng.randbytes(32).hex()})


def make_records(prefix, count, version="v1", sortindex=False):
    """``count`` records with 12-character ids (as Firefox's GUIDs)."""
    records = []
    for number in range(count):
        record_id = f"{prefix}{number:0{12 - len(prefix)}d}"
        record = {"id": record_id, "payload": encrypted_payload(f"{record_id}-{version}")}
        if sortindex:
            record["sortindex"] = number % 1000
        records.append(record)
    return records


def check_same(downloaded, uploaded, what):
    """The downloaded ``{id: record}`` holds exactly ``uploaded``, payloads included."""
    expected = {record["id"]: record["payload"] for record in uploaded}
    got = {record_id: record["payload"] for record_id, record in downloaded.items()}
    if got.keys() != expected.keys():
        missing, extra = expected.keys() - got.keys(), got.keys() - expected.keys()
        raise FlowError(f"{what}: {len(missing)} missing (e.g. {sorted(missing)[:3]}), "
                        f"{len(extra)} unexpected (e.g. {sorted(extra)[:3]})")
    wrong = [record_id for record_id in expected if got[record_id] != expected[record_id]]
    if wrong:
        raise FlowError(f"{what}: {len(wrong)} payloads differ (e.g. {wrong[:3]})")


def token_error(answer, status, error_status, description=None):
    """The tokenserver's refusal: ``status`` with ``{"status": error_status, "errors": [...]}``."""
    expect(answer, status)
    body = json.loads(answer.body)
    if body.get("status") != error_status or not body.get("errors"):
        raise FlowError(f"expected the {error_status!r} error, got {answer!r}")
    if description is not None and body["errors"][0].get("description") != description:
        raise FlowError(f"expected {description!r}, got {answer!r}")
    return body


# --- the whole flow -------------------------------------------------------------------------


@dataclasses.dataclass
class FlowReport:
    """What happened, for the test to print or check further."""

    uids: list = dataclasses.field(default_factory=list)
    nodes: list = dataclasses.field(default_factory=list)
    requests: int = 0
    batches: dict = dataclasses.field(default_factory=dict)
    posts: int = 0
    timings: dict = dataclasses.field(default_factory=dict)


def run_flow(tokenserver_url, fxa, take_node_out, *, bookmarks=BOOKMARKS, history=HISTORY,
             seed=None, check_old_node=None):
    """Current Firefox from first sign-in to a storage node taken out of service.

    ``take_node_out(node_url)`` is the operator's action on the deployment
    (``syncserver-admin node ...``) that takes the node the account is on
    out of service; ``check_old_node(device, old_token)``, when given, checks
    what the old node answers the old token afterwards.
    """
    seed = seed or f"{time.time_ns()}"
    account = Account.new(seed)
    http_client = HTTP()
    report = FlowReport()
    clock = time.monotonic()

    def lap(name):
        nonlocal clock
        now = time.monotonic()
        report.timings[name] = round(now - clock, 2)
        clock = now

    desktop = Device("desktop", tokenserver_url, fxa, account, http_client)
    laptop = Device("laptop", tokenserver_url, fxa, account, http_client)
    try:
        # --- 1. the first device: token, configuration, keys, first upload -----------------
        token = desktop.sign_in()
        report.uids.append(token["uid"])
        report.nodes.append(desktop.node)
        desktop.info_configuration()
        if desktop.info_collections() != {}:
            raise FlowError("a new account's storage is not empty")
        keys = desktop.set_up_keys(f"sync-{seed}"[:12])
        bookmark_records = make_records("b", bookmarks)
        history_records = make_records("h", history, sortindex=True)
        bookmark_commits = desktop.upload("bookmarks", bookmark_records)
        history_commits = desktop.upload("history", history_records)
        lap("first upload")
        collections = desktop.info_collections()
        if collections != {"meta": keys["meta"][0], "crypto": keys["crypto"][0],
                           "bookmarks": bookmark_commits[-1], "history": history_commits[-1]}:
            raise FlowError(f"info/collections after the first upload: {collections}")
        counts = desktop.collection_counts()
        if counts != {"meta": 1, "crypto": 1, "bookmarks": bookmarks, "history": history}:
            raise FlowError(f"info/collection_counts after the first upload: {counts}")
        # As many batches as the tighter of max_total_records and max_total_bytes needs,
        # give or take the records that did not fit in the last one's bytes.
        history_bytes = sum(len(record["payload"].encode()) for record in history_records)
        least = max(-(-history // desktop.config["max_total_records"]),
                    -(-history_bytes // desktop.config["max_total_bytes"]))
        if not least <= len(history_commits) <= least + 1:
            raise FlowError(f"{history} history records ({history_bytes} bytes) took "
                            f"{len(history_commits)} batches; {desktop.config}")
        report.batches = {"bookmarks": len(bookmark_commits), "history": len(history_commits)}
        report.posts = desktop.posts

        # meta/global is updated only against the version the device saw.
        meta_modified, meta_payload = keys["meta"]
        answer = expect(desktop.put_record("meta", "global", meta_payload + " ", meta_modified),
                        200)
        new_meta = Decimal(answer.body.decode())
        desktop._check_newer(new_meta)
        expect(desktop.put_record("meta", "global", meta_payload, meta_modified), 412)
        meta_payload += " "

        # --- 2. a second device: same account, full download with paging --------------------
        token2 = laptop.sign_in()
        if (token2["uid"], token2["api_endpoint"]) != (token["uid"], token["api_endpoint"]):
            raise FlowError(f"the second device got another uid or endpoint: {token2}")
        laptop.info_configuration()
        seen = laptop.info_collections()
        if seen != dict(collections, meta=new_meta):
            raise FlowError(f"the second device sees {seen}")
        if laptop.get_record("meta", "global")["payload"] != meta_payload:
            raise FlowError("the second device reads another meta/global")
        if laptop.get_record("crypto", "keys")["payload"] != keys["crypto"][1]:
            raise FlowError("the second device reads other keys")
        got, pages = laptop.download("bookmarks")
        check_same(got, bookmark_records, "the second device's bookmarks")
        if pages != -(-bookmarks // DOWNLOAD_PAGE):
            raise FlowError(f"{bookmarks} bookmarks came in {pages} pages")
        got, _ = laptop.download("history", limit=3 * DOWNLOAD_PAGE, sort="newest")
        check_same(got, history_records, "the second device's history")
        if laptop.last_sync != {"bookmarks": bookmark_commits[-1],
                                "history": history_commits[-1]}:
            raise FlowError(f"the second device's last sync: {laptop.last_sync}")
        # Firefox for Android signs in too, and reads each collection in one request.
        phone = Device("phone", tokenserver_url, fxa, account, http_client)
        if phone.sign_in()["uid"] != token["uid"]:
            raise FlowError("the phone got another uid")
        check_same(phone.download_everything("history"), history_records, "the phone's history")
        check_same(phone.download_everything("bookmarks"), bookmark_records,
                   "the phone's bookmarks")
        # Each device registers in the clients collection (with a TTL, as desktop does).
        clients = {}
        for device, client_id in ((desktop, "clientdesk01"), (laptop, "clientlapt01")):
            payload = encrypted_payload(client_id)
            answer = expect(device.storage("PUT", f"storage/clients/{client_id}", {
                "id": client_id, "payload": payload, "ttl": 1_814_400}), 200)
            device._check_newer(Decimal(answer.body.decode("ascii")))
            clients[client_id] = payload
        for device in (desktop, laptop):
            got, _ = device.download("clients")
            if {key: record["payload"] for key, record in got.items()} != clients:
                raise FlowError(f"the {device.name} sees the clients {sorted(got)}")
        lap("second device full download")

        # --- 3. incremental syncs both ways --------------------------------------------------
        new_history = make_records("hn", 150, sortindex=True)
        changed_bookmarks = make_records("b", 40, version="v2")
        laptop.upload("history", new_history)
        laptop.upload("bookmarks", changed_bookmarks)
        got, _ = desktop.download("history", newer=desktop.last_sync["history"])
        check_same(got, new_history, "the first device's incremental history")
        got, _ = desktop.download("bookmarks", newer=desktop.last_sync["bookmarks"], limit=25)
        check_same(got, changed_bookmarks, "the first device's incremental bookmarks")
        # The second device starts a full download while the first uploads: the next page
        # (sent with X-If-Unmodified-Since = the first page's X-Last-Modified) is refused,
        # and the device syncs again incrementally, as desktop's getBatched does.
        page = expect(laptop.storage("GET", "storage/history?full=1&limit=1000&sort=oldest"),
                      200)
        offset = page.header("X-Weave-Next-Offset")
        if offset is None or len(page.json()) != 1000:
            raise FlowError(f"no second page of history: {page!r}")
        desktop_history = make_records("hd", 60, sortindex=True)
        desktop.upload("history", desktop_history)
        query = urllib.parse.urlencode({"full": "1", "limit": "1000", "sort": "oldest",
                                        "offset": offset})
        refused = expect(laptop.storage("GET", f"storage/history?{query}", headers={
            "X-If-Unmodified-Since": page.header("X-Last-Modified")}), 412)
        if refused.timestamp() != desktop.last_sync["history"]:
            raise FlowError(f"the 412 does not name the new last-modified: {refused!r}")
        got, _ = laptop.download("history", newer=laptop.last_sync["history"])
        check_same(got, desktop_history, "the second device's incremental history")
        got, _ = laptop.download("bookmarks", newer=laptop.last_sync["bookmarks"])
        if got:
            raise FlowError(f"nothing changed, yet {len(got)} bookmarks are newer")
        counts = laptop.collection_counts()
        if counts != {"meta": 1, "crypto": 1, "clients": 2, "bookmarks": bookmarks,
                      "history": history + 150 + 60}:
            raise FlowError(f"counts after the incremental syncs: {counts}")
        lap("incremental syncs")

        # --- 4. a key change: new uid, empty storage, the old state refused ------------------
        old_token, old_credentials, old_account = desktop.token, desktop.credentials, account
        account = account.change_keys(f"{seed}-1")
        desktop.account = account
        token3 = desktop.sign_in()
        report.uids.append(token3["uid"])
        report.nodes.append(desktop.node)
        if token3["uid"] == old_token["uid"]:
            raise FlowError("a key change kept the uid")
        if desktop.node != report.nodes[0]:
            raise FlowError(f"a key change moved the account from {report.nodes[0]} to "
                            f"{desktop.node}")
        if desktop.info_collections() != {} or desktop.collection_counts() != {}:
            raise FlowError("the storage after a key change is not empty")
        # The new token cannot reach the old uid's data.
        expect(desktop.storage("GET", "info/collections", endpoint=old_token["api_endpoint"]),
               401)
        expect(desktop.storage("GET", "storage/bookmarks?full=1&limit=1",
                               endpoint=old_token["api_endpoint"]), 401)
        # The device still on the old keys is refused a token: its client state is stale.
        laptop.account = dataclasses.replace(old_account, generation=account.generation)
        token_error(laptop.request_token(), 401, "invalid-client-state",
                    "Unacceptable client-state value stale value")
        # ... and so is one that claims no key change.
        laptop.account = old_account
        token_error(laptop.request_token(), 401, "invalid-client-state")
        # The old token names the old uid only: it cannot read the new one. Until it
        # expires it still reads the old uid, whose records stay until they are purged
        # (a storage node checks the token, not the tokenserver's rows: reference §2.2).
        expect(desktop.storage("GET", "info/collections", credentials=old_credentials), 401)
        old_view = expect(desktop.storage("GET", "info/collection_counts",
                                          endpoint=old_token["api_endpoint"],
                                          credentials=old_credentials), 200).json()
        if old_view != counts:
            raise FlowError(f"the old uid's records changed: {old_view} != {counts}")
        desktop.config = None
        desktop.info_configuration()
        keys = desktop.set_up_keys(f"rekey-{seed}"[:12])
        rekeyed_bookmarks = make_records("b", bookmarks, version="v3")
        desktop.upload("bookmarks", rekeyed_bookmarks)
        laptop.account = account
        token4 = laptop.sign_in()
        if token4["uid"] != token3["uid"]:
            raise FlowError("the second device with the new keys got another uid")
        got, _ = laptop.download("bookmarks")
        check_same(got, rekeyed_bookmarks, "the bookmarks after the key change")
        if laptop.collection_counts() != {"meta": 1, "crypto": 1, "bookmarks": bookmarks}:
            raise FlowError("the storage after the key change holds old records")
        lap("key change")

        # --- 5. the storage node taken out of service ----------------------------------------
        before = desktop.token
        take_node_out(desktop.node + "/")
        if check_old_node is not None:
            check_old_node(desktop, before)
        token5 = desktop.sign_in()
        report.uids.append(token5["uid"])
        report.nodes.append(desktop.node)
        if token5["uid"] == before["uid"] or desktop.node == report.nodes[1]:
            raise FlowError(f"the account was not moved off {report.nodes[1]}: {token5}")
        if desktop.info_collections() != {}:
            raise FlowError("the new node's storage is not empty")
        desktop.config = None
        desktop.info_configuration()
        desktop.set_up_keys(f"moved-{seed}"[:12])
        desktop.upload("bookmarks", rekeyed_bookmarks)
        desktop.upload("history", history_records)
        token6 = laptop.sign_in()
        if (token6["uid"], token6["api_endpoint"]) != (token5["uid"], token5["api_endpoint"]):
            raise FlowError(f"the second device was not moved with the first: {token6}")
        got, _ = laptop.download("bookmarks")
        check_same(got, rekeyed_bookmarks, "the bookmarks on the new node")
        got, _ = laptop.download("history")
        check_same(got, history_records, "the history on the new node")
        lap("node out of service")
        report.requests = http_client.requests
        return report
    finally:
        http_client.close()
