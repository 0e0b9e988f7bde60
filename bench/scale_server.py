"""A syncserver under gunicorn on a given database, and sync clients that time its answers.

Shared by the scale benchmarks (``purge_scale.py``, ``stream_memory.py``):
:class:`ScaleServer` serves ``bench/bench.ini`` with the storage and the
accounts on one database URL; :class:`SyncClients` runs a few client threads
that each sync one account as a device would (info/collections, the records
newer than its last write, a POST of 10 records, a short pause) and records
the latency of every request, so that a run can compare a baseline with the
same load while something else (a purge) runs.
"""

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run  # bench/run.py: process handling and the small HTTP client

PASSWORD = "scale-password-0123"


def username_of(email):
    return base64.b32encode(hashlib.sha1(email.lower().encode()).digest()).decode().lower()


class Account:
    def __init__(self, email):
        self.email = email
        self.username = username_of(email)
        token = base64.b64encode(f"{self.username}:{PASSWORD}".encode()).decode()
        self.authorization = "Basic " + token
        self.user_id = None

    @property
    def prefix(self):
        return f"/1.1/{self.username}"


class ScaleServer(run.SyncServer):
    """syncserver on ``sqluri`` (storage and accounts), under gunicorn."""

    name = "syncserver"

    def __init__(self, options, workdir, sqluri, extra_settings=()):
        super().__init__(options, workdir)
        self.sqluri = sqluri
        self.extra_settings = list(extra_settings)

    def prepare(self):
        self.ini = os.path.join(self.workdir, "scale.ini")
        lines = ["[app:main]", f"use = config:{os.path.join(run.HERE, 'bench.ini')}",
                 f"storage.sqluri = {self.sqluri}", f"auth.sqluri = {self.sqluri}",
                 *self.extra_settings]
        with open(self.ini, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        check = subprocess.run(
            [sys.executable, "-c", "import syncserver_wsgi"], cwd=run.HERE, capture_output=True,
            text=True, env=dict(os.environ, SYNCSERVER_BENCH_INI=self.ini), timeout=300)
        if check.returncode != 0:
            raise RuntimeError("the syncserver app does not load:\n" + check.stderr[-2000:])

    def register(self, account):
        client = run.HTTP(self.port)
        try:
            status, _, body = client.request(
                "PUT", f"/user/1.0/{account.username}",
                json.dumps({"password": PASSWORD, "email": account.email}), auth=False)
        finally:
            client.close()
        if status != 200:
            raise RuntimeError(f"creating {account.email} gave {status}: {body[:300]!r}")


def user_ids(sqluri, accounts):
    """Fill in each account's numeric id from the users table."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(sqluri)
    try:
        with engine.connect() as connection:
            for account in accounts:
                account.user_id = connection.execute(sqlalchemy.text(
                    "SELECT userid FROM users WHERE username = :u"),
                    {"u": account.username}).scalar()
    finally:
        engine.dispose()


class Connection(run.HTTP):
    """run.HTTP with the account's own Authorization header."""

    def __init__(self, port, account):
        super().__init__(port)
        self.account = account

    def call(self, method, path, body=None, timeout=120):
        headers = {"Authorization": self.account.authorization,
                   "Content-Type": "application/json"}
        data = body.encode() if isinstance(body, str) else body
        for attempt in (1, 2):
            if self.connection is None:
                import http.client
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port,
                                                             timeout=timeout)
            try:
                self.connection.request(method, path, body=data, headers=headers)
                response = self.connection.getresponse()
                payload = response.read()
                return response.status, payload
            except OSError:
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


class SyncClients:
    """Client threads syncing their accounts in a loop; latencies kept per phase and kind.

    ``phase`` is a label the caller switches ("baseline", "purge", ...);
    every request's latency (seconds) is filed under ``(phase, account
    class, "read" | "write")``.
    """

    def __init__(self, port, accounts, collection="history", think_seconds=0.02):
        self.port = port
        self.accounts = accounts  # [(Account, class label)]
        self.collection = collection
        self.think_seconds = think_seconds
        self.phase = None
        self.samples = {}
        self.errors = []
        self._stop = threading.Event()
        self._threads = []
        self._lock = threading.Lock()

    def start(self):
        for index, (account, label) in enumerate(self.accounts):
            thread = threading.Thread(target=self._loop, args=(index, account, label),
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _record(self, label, kind, seconds):
        phase = self.phase
        if phase is None:
            return
        with self._lock:
            self.samples.setdefault((phase, label, kind), []).append(seconds)

    def _loop(self, index, account, label):
        connection = Connection(self.port, account)
        storage = f"{account.prefix}/storage/{self.collection}"
        newer = time.time()  # only what this client writes: never a whole collection
        cycle = 0
        while not self._stop.is_set():
            cycle += 1
            batch = json.dumps([{"id": f"c{index}-{cycle:07d}-{n}", "payload": "p" * 300,
                                 "sortindex": n} for n in range(10)])
            requests = (("read", "GET", f"{account.prefix}/info/collections", None),
                        ("read", "GET", f"{storage}?full=1&newer={newer:.2f}", None),
                        ("write", "POST", storage, batch))
            for kind, method, path, body in requests:
                started = time.perf_counter()
                try:
                    status, payload = connection.call(method, path, body)
                except OSError as error:
                    self.errors.append(f"{method} {path}: {error}")
                    continue
                elapsed = time.perf_counter() - started
                if status != 200:
                    self.errors.append(f"{method} {path}: {status} {payload[:100]!r}")
                    continue
                self._record(label, kind, elapsed)
                if method == "POST":
                    newer = float(json.loads(payload)["modified"]) - 0.01
            time.sleep(self.think_seconds)
        connection.close()

    def summary(self, phase):
        """``{(class, kind): (count, p50 ms, p99 ms)}`` of one phase."""
        from scale_data import percentile

        result = {}
        for (sample_phase, label, kind), values in self.samples.items():
            if sample_phase == phase:
                result[(label, kind)] = (len(values), percentile(values, 0.5) * 1000,
                                         percentile(values, 0.99) * 1000)
        return result
