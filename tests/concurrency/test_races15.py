"""Storage API 1.5 races over HTTP: two server processes, one MariaDB or PostgreSQL database.

- two clients committing batches to one collection at the same moment: both
  commits succeed, each batch is whole at its own timestamp, and a record
  both batches hold is entirely the later commit's (nothing interleaved);
- N writers with the same ``X-If-Unmodified-Since`` (a PUT of one item, or
  batch commits to one collection): exactly one wins, the others get 412
  and wrote nothing.
"""

import json
import threading
from decimal import Decimal

import pytest

from tests.concurrency.conftest import SYNC15_CONFIGS
from tests.concurrency.test_races import run_threads
from tests.e2e.sync15 import Sync15Client

pytestmark = pytest.mark.parametrize("cluster", SYNC15_CONFIGS, indirect=True)

ROUNDS = 3
WRITERS = 8


def client(cluster, n, uid):
    return Sync15Client(cluster.url(n), uid, cluster.master_secret)


def bsos(ids, tag):
    return [{"id": item_id, "payload": json.dumps({"by": tag, "id": item_id})} for item_id in ids]


def stored(reader, collection):
    answer = reader.get(f"storage/{collection}?full=1")
    assert answer.status == 200, answer
    return {record["id"]: record for record in answer.json()}


def test_two_batches_committed_at_once_are_both_whole_at_distinct_timestamps(cluster):
    uid = 3001
    reader = client(cluster, 0, uid)
    for round_number in range(ROUNDS):
        shared = [f"r{round_number}-shared{n:02d}" for n in range(20)]
        own = {tag: [f"r{round_number}-{tag}{n:03d}" for n in range(230)] for tag in "AB"}
        barrier = threading.Barrier(2)
        commits = {}

        def upload(n, tag, barrier=barrier, shared=shared, own=own, commits=commits):
            writer = client(cluster, n, uid)
            opened = writer.post("storage/bookmarks?batch=true",
                                 bsos(own[tag][:80] + shared, tag))
            assert opened.status == 202, opened
            assert len(opened.json()["success"]) == 100, opened
            batch = opened.json()["batch"]
            appended = writer.post(f"storage/bookmarks?batch={batch}", bsos(own[tag][80:180], tag))
            assert appended.status == 202, appended
            barrier.wait(30)
            committed = writer.post(f"storage/bookmarks?batch={batch}&commit=true",
                                    bsos(own[tag][180:], tag))
            assert committed.status == 200, committed
            body = committed.json()
            assert len(body["success"]) == 50 and not body["failed"]
            commits[tag] = Decimal(str(body["modified"]))
            writer.close()

        run_threads([lambda: upload(0, "A"), lambda: upload(1, "B")])
        assert commits["A"] != commits["B"], commits
        later = max(commits, key=commits.get)
        records = stored(reader, "bookmarks")
        for tag in "AB":
            for item_id in own[tag]:
                record = records[item_id]
                assert Decimal(str(record["modified"])) == commits[tag], record
                assert json.loads(record["payload"])["by"] == tag, record
        for item_id in shared:
            record = records[item_id]
            assert Decimal(str(record["modified"])) == commits[later], (record, commits)
            assert json.loads(record["payload"])["by"] == later, (record, commits)
        info = reader.get("info/collections").json()
        assert Decimal(str(info["bookmarks"])) == max(commits.values())
    assert len(stored(reader, "bookmarks")) == ROUNDS * (20 + 2 * 230)
    reader.close()


def test_writers_with_the_same_if_unmodified_since_have_exactly_one_winner(cluster):
    """Of a PUT of one item, then of batch commits to one collection (one cluster for both)."""
    for uid, write in ((3002, "put"), (3003, "batch")):
        _one_winner(cluster, uid, write)


def _one_winner(cluster, uid, write):
    setup = client(cluster, 0, uid)
    first = setup.put("storage/meta/global", {"payload": "start"})
    assert first.status == 200, first
    first = setup.post("storage/forms", bsos(["existing"], "setup"))
    assert first.status == 200, first
    since = first.headers["X-Last-Modified"]
    barrier = threading.Barrier(WRITERS)
    statuses = {}

    def put(n):
        writer = client(cluster, n, uid)
        barrier.wait(30)
        answer = writer.put("storage/meta/global", {"payload": f"writer {n}"},
                            headers={"X-If-Unmodified-Since": since})
        statuses[n] = answer.status
        writer.close()

    def batch(n):
        writer = client(cluster, n, uid)
        ids = [f"w{n}-{k:03d}" for k in range(60)]
        opened = writer.post("storage/forms?batch=true", bsos(ids[:30], n),
                             headers={"X-If-Unmodified-Since": since})
        assert opened.status == 202, opened
        batch_id = opened.json()["batch"]
        barrier.wait(30)
        answer = writer.post(f"storage/forms?batch={batch_id}&commit=true", bsos(ids[30:], n),
                             headers={"X-If-Unmodified-Since": since})
        statuses[n] = answer.status
        if answer.status == 412:
            assert Decimal(answer.headers["X-Last-Modified"]) > Decimal(since), answer
        writer.close()

    target = put if write == "put" else batch
    run_threads([lambda n=n: target(n) for n in range(WRITERS)])
    winners = [n for n, status in statuses.items() if status == 200]
    assert len(winners) == 1, (write, statuses)
    assert sorted(statuses.values()) == [200] + [412] * (WRITERS - 1), (write, statuses)
    (winner,) = winners
    if write == "put":
        answer = setup.get("storage/meta/global")
        assert answer.json()["payload"] == f"writer {winner}"
    else:
        records = stored(setup, "forms")
        assert set(records) == {"existing"} | {f"w{winner}-{k:03d}" for k in range(60)}
    setup.close()
