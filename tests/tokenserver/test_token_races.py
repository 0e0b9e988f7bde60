"""Racing token requests of one account: one transaction per account, so one outcome.

Threads released together by a barrier, through one app and through two
apps (two connection pools, as two server processes have) on the same
database: SQLite, MariaDB and PostgreSQL. Without the account lock, racing
first requests create several rows (uids) and racing key changes several
new uids; the assertions below fail then.
"""

import threading

import pytest
import webtest

from tests.tokenserver.token_client import client_state, fxa_uid, key_id

RACERS = 8


def race(apps, requests):
    """Send ``requests`` (header dicts) at once, spread over ``apps``; their responses."""
    barrier = threading.Barrier(len(requests))
    responses = [None] * len(requests)

    def send(index, headers):
        client = webtest.TestApp(apps[index % len(apps)].wsgi,
                                 extra_environ={"HTTP_HOST": "sync.example.org"})
        barrier.wait()
        responses[index] = client.get("/1.0/sync/1.5", headers=headers, expect_errors=True)

    threads = [threading.Thread(target=send, args=pair) for pair in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


@pytest.fixture(params=["one app", "two apps"])
def apps(request, make_token_app):
    first = make_token_app()
    return [first] if request.param == "one app" else [first, make_token_app()]


def headers_for(app, account, generation, keys_changed_at, state):
    token = app.fxa.mint({"sub": account, "fxa-generation": generation})
    return {"Authorization": f"Bearer {token}", "X-KeyID": key_id(keys_changed_at, state)}


def test_racing_first_requests_create_one_user(apps):
    account = fxa_uid("first-race")
    requests = [headers_for(apps[0], account, 1000, 1000, client_state("A"))
                for _ in range(RACERS)]
    responses = race(apps, requests)
    assert [response.status_int for response in responses] == [200] * RACERS
    assert len({response.json["uid"] for response in responses}) == 1
    assert len(apps[0].rows_of(account)) == 1
    assert apps[0].row_counts()[:2] == (1, 1)


def test_racing_key_changes_create_one_new_uid(apps):
    app = apps[0]
    account = fxa_uid("key-race")
    old = app.token(account, generation=1000, keys_changed_at=1000, state=client_state("A"),
                    status=200).json["uid"]
    requests = [headers_for(app, account, 2000, 2000, client_state("B")) for _ in range(RACERS)]
    responses = race(apps, requests)
    assert [response.status_int for response in responses] == [200] * RACERS
    uids = {response.json["uid"] for response in responses}
    assert len(uids) == 1 and old not in uids
    rows = app.rows_of(account)
    assert len(rows) == 2 and [row["replaced_at"] is None for row in rows] == [False, True]


def test_racing_different_key_changes_leave_one_current_row(apps):
    """Two devices racing with two new keys: one wins, the other is then stale or refused."""
    app = apps[0]
    account = fxa_uid("split-race")
    app.token(account, generation=1000, keys_changed_at=1000, state=client_state("A"),
              status=200)
    requests = [headers_for(app, account, 2000 + index % 2, 2000 + index % 2,
                            client_state(f"B{index % 2}")) for index in range(RACERS)]
    responses = race(apps, requests)
    assert all(response.status_int in (200, 401) for response in responses)
    rows = app.rows_of(account)
    assert [row["replaced_at"] for row in rows].count(None) == 1
    current = next(row for row in rows if row["replaced_at"] is None)
    winners = {response.json["uid"] for response in responses if response.status_int == 200}
    assert current["uid"] in winners
