"""Who may use the server: allow_new_users, the allow-list of account ids, the cap, blocks.

Every refusal is 401 ``new-users-disabled`` with nothing written, and a
line on the security log naming the account id and the rule.
"""

import logging
import threading

import webtest

from tests.tokenserver.token_client import client_state, error_body, fxa_uid

REFUSED = error_body("new-users-disabled")
ALICE, BOB, CAROL = fxa_uid("alice"), fxa_uid("bob"), fxa_uid("carol")


def assert_refused(app, account, caplog, rule, **request):
    before = app.row_counts()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="syncserver.security"):
        response = app.token(account, status=401, **request)
    assert response.json == REFUSED
    assert app.row_counts() == before
    [record] = [r for r in caplog.records if r.name == "syncserver.security"]
    assert "TokenRefused" in record.getMessage() and account in record.getMessage()
    assert rule in record.getMessage()


def test_closed_to_new_accounts_existing_ones_keep_working(make_token_app, caplog):
    open_app = make_token_app()
    uid = open_app.token(ALICE, status=200).json["uid"]
    closed = make_token_app(tokenserver__allow_new_users="false")
    assert closed.token(ALICE, status=200).json["uid"] == uid
    # Even a key change (a new uid) is not a new account.
    assert closed.token(ALICE, generation=2000, keys_changed_at=2000, state=client_state(2),
                        status=200).json["uid"] != uid
    assert_refused(closed, BOB, caplog, "allow_new_users")


def test_only_listed_account_ids_get_tokens(make_token_app, caplog):
    listing_alice = make_token_app(tokenserver__allowed_fxa_uids=f"{ALICE}, 0123abcd")
    listing_alice.token(ALICE, status=200)
    assert_refused(listing_alice, BOB, caplog, "allowed_fxa_uids")
    # Taking an account off the list cuts it off, data and all kept.
    listing_bob = make_token_app(tokenserver__allowed_fxa_uids=BOB)
    assert_refused(listing_bob, ALICE, caplog, "allowed_fxa_uids")
    listing_bob.token(BOB, status=200)


def test_the_cap_on_accounts(make_token_app, caplog):
    app = make_token_app(tokenserver__max_users="2")
    app.token(ALICE, status=200)
    app.token(BOB, status=200)
    assert_refused(app, CAROL, caplog, "max_users")
    app.token(ALICE, status=200)  # existing accounts are not counted twice
    app.users.delete_account(ALICE)
    app.token(CAROL, status=200)


def test_a_blocked_account_is_refused_until_unblocked(make_token_app, caplog):
    app = make_token_app()
    uid = app.token(ALICE, status=200).json["uid"]
    app.users.set_blocked(ALICE, True)
    assert_refused(app, ALICE, caplog, "blocked")
    app.users.set_blocked(ALICE, False)
    assert app.token(ALICE, status=200).json["uid"] == uid
    # An account can be blocked before its first token.
    app.users.set_blocked(BOB, True)
    assert_refused(app, BOB, caplog, "blocked")


def test_racing_newcomers_never_overshoot_the_cap(make_token_app):
    app = make_token_app(tokenserver__max_users="3")
    other = make_token_app(tokenserver__max_users="3")  # a second process's pool
    accounts = [fxa_uid(f"racer-{number}") for number in range(8)]
    tokens = {account: app.fxa.mint({"sub": account}) for account in accounts}
    barrier = threading.Barrier(len(accounts))
    statuses = {}

    def ask(index, account):
        client = webtest.TestApp((app if index % 2 else other).wsgi)
        barrier.wait()
        response = client.get("/1.0/sync/1.5", expect_errors=True, headers={
            "Authorization": f"Bearer {tokens[account]}", "X-KeyID": "1000-u7s"})
        statuses[account] = response.status_int

    threads = [threading.Thread(target=ask, args=pair) for pair in enumerate(accounts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses.values()) == [200] * 3 + [401] * 5
    assert app.users.count_accounts() == 3
