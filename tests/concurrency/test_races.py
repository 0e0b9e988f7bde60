"""Many clients, two server processes, one database: what the protocol promises under load.

- no 5xx at all (a duplicate key or a deadlock is the server's problem, not
  the client's);
- no lost update: every item holds the payload of the last acknowledged
  write to it (last = highest timestamp);
- timestamps of one user's collection are unique and follow real time: a
  write acknowledged before another was sent has the smaller timestamp, and
  no client ever sees info/collections go back;
- exactly one winner when clients race with the same X-If-Unmodified-Since.
"""

import threading
import time
import uuid
from collections import defaultdict

from tests.e2e.conftest import Client, new_account

CLIENTS = 16
ROUNDS = 20


def register_accounts(cluster, count):
    accounts = []
    client = Client(cluster.url(0))
    try:
        for _ in range(count):
            email, username, password = new_account("race")
            response = client.put(f"/user/1.0/{username}", {"password": password,
                                                            "email": email})
            assert response.status == 200, response
            accounts.append((username, password))
    finally:
        client.close()
    return accounts


def storage_clients(cluster, account):
    """One client per server for ``account``."""
    username, password = account
    return [Client(f"{url}/1.1/{username}/", username, password) for url in cluster.urls]


def run_threads(targets):
    """Run every callable in its own thread; re-raise the first failure."""
    errors = []

    def guarded(target):
        try:
            target()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
        assert not thread.is_alive(), "a client thread hung"
    if errors:
        raise errors[0]


class Write:
    """One acknowledged write, with the real-time window it happened in."""

    __slots__ = ("collection", "payloads", "received", "sent", "timestamp", "user")

    def __init__(self, user, collection, timestamp, payloads, sent, received):
        self.user = user
        self.collection = collection
        self.timestamp = timestamp
        self.payloads = payloads
        self.sent = sent
        self.received = received


def test_mixed_load_loses_nothing_and_keeps_timestamps_in_order(cluster):
    accounts = register_accounts(cluster, 5)
    shared = accounts[0]
    writes, failures = [], []
    lock = threading.Lock()

    def client_loop(number):
        # Half the clients share one user; the others pair up on the remaining four.
        account = shared if number % 2 == 0 else accounts[1 + (number // 2) % 4]
        clients = storage_clients(cluster, account)
        seen = {}
        own_last = {}
        try:
            for step in range(ROUNDS):
                client = clients[(number + step) % len(clients)]
                collection = ("history", "tabs", f"custom{step % 5}")[step % 3]
                tag = f"{number}:{step}"
                items = {f"shared{k}": f"{tag}:{k}" for k in range(2)}
                items.update({f"c{number}-{step}-{k}": f"{tag}:own{k}" for k in range(3)})
                sent = time.monotonic()
                if step % 4 == 3:
                    (item_id, payload), = list(items.items())[:1]
                    items = {item_id: payload}
                    response = client.put(f"storage/{collection}/{item_id}",
                                          {"payload": payload})
                    ok = response.status == 200
                    stamp = response.weave_timestamp if ok else None
                    if ok:
                        assert response.json() == stamp
                else:
                    response = client.post(f"storage/{collection}",
                                           [{"id": i, "payload": p} for i, p in items.items()])
                    ok = response.status == 200
                    if ok:
                        body = response.json()
                        assert sorted(body["success"]) == sorted(items), body
                        assert not body["failed"], body
                        stamp = body["modified"]
                received = time.monotonic()
                if not ok:
                    with lock:
                        failures.append(response)
                    continue
                assert stamp > own_last.get(collection, 0), "a client's own writes went back"
                own_last[collection] = stamp
                with lock:
                    writes.append(Write(account[0], collection, stamp, items, sent, received))

                info_client = clients[(number + step + 1) % len(clients)]
                info = info_client.get("info/collections")
                if info.status != 200:
                    with lock:
                        failures.append(info)
                    continue
                stamps = info.json()
                # Read-your-writes through the other process, and never backwards.
                assert stamps.get(collection, 0) >= stamp, (collection, stamps, stamp)
                for name, value in stamps.items():
                    assert value >= seen.get(name, 0), f"info/collections went back for {name}"
                    seen[name] = value
        finally:
            for client in clients:
                client.close()

    run_threads([lambda n=n: client_loop(n) for n in range(CLIENTS)])
    assert not failures, failures[:5]

    by_collection = defaultdict(list)
    for write in writes:
        by_collection[write.user, write.collection].append(write)
    for (_user, collection), group in by_collection.items():
        stamps = [write.timestamp for write in group]
        assert len(set(stamps)) == len(stamps), f"duplicate timestamps in {collection}"
        # A write acknowledged before another was sent has the smaller timestamp.
        ordered = sorted(group, key=lambda write: write.received)
        for index, earlier in enumerate(ordered):
            for later in ordered[index + 1:]:
                if later.sent > earlier.received:
                    assert later.timestamp > earlier.timestamp, (collection, earlier.timestamp,
                                                                 later.timestamp)

    for account in accounts:
        client = storage_clients(cluster, account)[1]
        info = client.get("info/collections").json()
        for collection in {write.collection for write in writes if write.user == account[0]}:
            group = by_collection[account[0], collection]
            assert info[collection] == max(write.timestamp for write in group)
            expected = {}
            for write in sorted(group, key=lambda write: write.timestamp):
                expected.update(write.payloads)
            response = client.get(f"storage/{collection}?full=1")
            assert response.status == 200, response
            stored = {record["id"]: record["payload"] for record in response.json()}
            assert stored == expected, f"lost or stale updates in {collection}"
        client.close()


def test_if_unmodified_since_race_has_exactly_one_winner(cluster):
    (account,) = register_accounts(cluster, 1)
    setup = storage_clients(cluster, account)[0]
    response = setup.put("storage/prefs/contended", {"payload": "start"})
    assert response.status == 200, response
    since = response.json()
    contenders = 12
    for round_number in range(6):
        barrier = threading.Barrier(contenders)
        outcomes = []
        lock = threading.Lock()

        def contend(number, since=since, barrier=barrier, outcomes=outcomes,
                    round_number=round_number, lock=lock):
            client = storage_clients(cluster, account)[number % 2]
            payload = f"round {round_number} by {number}"
            headers = {"X-If-Unmodified-Since": str(since)}
            barrier.wait(60)
            if round_number % 2:
                response = client.post("storage/prefs", [
                    {"id": "contended", "payload": payload},
                    {"id": f"extra-{round_number}-{number}", "payload": payload}],
                    headers=headers)
            else:
                response = client.put("storage/prefs/contended", {"payload": payload},
                                      headers=headers)
            client.close()
            with lock:
                outcomes.append((response, payload))

        run_threads([lambda n=n, c=contend: c(n) for n in range(contenders)])
        statuses = sorted(response.status for response, _ in outcomes)
        assert statuses == [200] + [412] * (contenders - 1), [r for r, _ in outcomes]
        winner = next(payload for response, payload in outcomes if response.status == 200)
        stored = setup.get("storage/prefs/contended").json()
        assert stored["payload"] == winner
        since = stored["modified"]
        if round_number % 2:
            ids = setup.get("storage/prefs").json()
            extras = [i for i in ids if i.startswith(f"extra-{round_number}-")]
            assert extras == [f"extra-{round_number}-" + winner.rsplit(" ", 1)[1]]
    setup.close()


def test_first_writes_of_new_users_and_new_collections_race(cluster):
    """Rows created on first use (user, collection name, timestamps) under racing creators."""
    accounts = register_accounts(cluster, 3)
    name = "fresh" + uuid.uuid4().hex[:8]
    barrier = threading.Barrier(CLIENTS)
    responses = []
    lock = threading.Lock()

    def first_write(number):
        account = accounts[number % len(accounts)]
        client = storage_clients(cluster, account)[number % 2]
        barrier.wait(60)
        response = client.post(f"storage/{name}", [{"id": f"i{number}", "payload": str(number)}])
        client.close()
        with lock:
            responses.append(response)

    run_threads([lambda n=n: first_write(n) for n in range(CLIENTS)])
    assert [r for r in responses if r.status != 200] == []
    for index, account in enumerate(accounts):
        client = storage_clients(cluster, account)[0]
        stored = client.get(f"storage/{name}").json()
        assert sorted(stored) == sorted(f"i{n}" for n in range(CLIENTS)
                                        if n % len(accounts) == index)
        client.close()


def test_racing_registrations_of_one_username_have_one_winner(cluster):
    email, username, password = new_account("race")
    barrier = threading.Barrier(8)
    statuses = []

    def register(number):
        client = Client(cluster.url(number))
        barrier.wait(60)
        response = client.put(f"/user/1.0/{username}",
                              {"password": password + str(number), "email": email})
        client.close()
        statuses.append(response.status)

    run_threads([lambda n=n: register(n) for n in range(8)])
    assert sorted(statuses) == [200] + [400] * 7, statuses
