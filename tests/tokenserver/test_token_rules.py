"""The user bookkeeping rules of reference §1.6 over HTTP, on SQLite, MariaDB and PostgreSQL.

Each rule of table D with its exact status and body, the new values of
step E, the new uid of step F, the race repair of step A and the retired
accounts; every refusal leaves the database as it was. Each test has its
own accounts on a module-wide app per database.
"""

import pytest

from syncserver.tokenserver.users import MAX_GENERATION
from tests.tokenserver.token_client import client_state, error_body, fxa_uid, key_id

A, B, C = client_state("A"), client_state("B"), client_state("C")


@pytest.fixture
def app(shared_token_app):
    return shared_token_app


def client_state_error(why):
    return error_body("invalid-client-state", "header", "X-Client-State",
                      f"Unacceptable client-state value {why}")


def refused(app, account, body, **request):
    """Ask with ``request``, expect a 401 with ``body`` and no change to the database."""
    before_rows, before_counts = app.rows_of(account), app.row_counts()
    response = app.token(account, status=401, **request)
    assert response.json == body
    assert app.rows_of(account) == before_rows
    assert app.row_counts() == before_counts


def test_a_new_account_gets_a_row_with_the_request_values(app):
    account = fxa_uid("rules-new")
    uid = app.token(account, generation=1000, keys_changed_at=900, state=A, status=200).json["uid"]
    [row] = app.rows_of(account)
    assert row["uid"] == uid
    assert (row["generation"], row["keys_changed_at"], row["client_state"]) == (1000, 900, A)
    assert row["replaced_at"] is None and row["node_id"] is None  # no node list: this server
    app.token(account, generation=1000, keys_changed_at=900, state=A, status=200)
    assert len(app.rows_of(account)) == 1


def test_zero_generation_and_keys_changed_at_mean_absent(app):
    account = fxa_uid("rules-zero")
    app.token(account, generation=0, keys_changed_at=0, state=A, status=200)
    [row] = app.rows_of(account)
    assert (row["generation"], row["keys_changed_at"]) == (0, None)
    app.token(account, generation=None, keys_changed_at=0, state=A, status=200)
    assert len(app.rows_of(account)) == 1


def test_d1_keys_changed_at_ahead_of_the_generation(app):
    account = fxa_uid("rules-d1")
    app.token(account, generation=1000, keys_changed_at=1000, state=A, status=200)
    refused(app, account, error_body("invalid-keysChangedAt"),
            generation=1500, keys_changed_at=2000, state=B)


def test_d2_an_empty_client_state_after_a_real_one(app):
    account = fxa_uid("rules-d2")
    app.token(account, state=A, status=200)
    refused(app, account, client_state_error("empty string"),
            generation=2000, keys_changed_at=2000, key_id_header="2000-")


def test_an_empty_client_state_is_fine_until_a_real_one(app):
    account = fxa_uid("rules-empty")
    first = app.token(account, key_id_header="1000-", status=200).json["uid"]
    assert app.rows_of(account)[0]["client_state"] == ""
    second = app.token(account, generation=2000, keys_changed_at=2000, state=A,
                       status=200).json["uid"]
    assert second != first


def test_d3_a_client_state_never_comes_back(app):
    account = fxa_uid("rules-d3")
    app.token(account, generation=1000, keys_changed_at=1000, state=A, status=200)
    app.token(account, generation=2000, keys_changed_at=2000, state=B, status=200)
    refused(app, account, client_state_error("stale value"),
            generation=3000, keys_changed_at=3000, state=A)


def test_d4_a_new_client_state_needs_a_new_generation(app):
    account = fxa_uid("rules-d4")
    app.token(account, generation=1000, keys_changed_at=1000, state=A, status=200)
    refused(app, account, client_state_error("new value with no generation change"),
            generation=1000, keys_changed_at=1000, state=B)


def test_d5_a_new_client_state_needs_a_new_keys_changed_at(app):
    account = fxa_uid("rules-d5")
    app.token(account, generation=1000, keys_changed_at=1000, state=A, status=200)
    refused(app, account, client_state_error("new value with no keys_changed_at change"),
            generation=2000, keys_changed_at=1000, state=B)


def test_d6_the_generation_never_goes_back(app):
    account = fxa_uid("rules-d6")
    app.token(account, generation=5000, keys_changed_at=1000, state=A, status=200)
    refused(app, account, error_body("invalid-generation"),
            generation=4999, keys_changed_at=1000, state=A)


def test_d7_keys_changed_at_never_goes_back(app):
    account = fxa_uid("rules-d7")
    app.token(account, generation=1000, keys_changed_at=1000, state=A, status=200)
    refused(app, account, error_body("invalid-keysChangedAt"),
            generation=1000, keys_changed_at=999, state=A)


def test_d8_keys_changed_at_cannot_disappear(app):
    account = fxa_uid("rules-d8")
    app.token(account, generation=1000, keys_changed_at=1000, state=A, status=200)
    refused(app, account, error_body("invalid-keysChangedAt"),
            generation=1000, keys_changed_at=0, state=A)


def test_the_first_rule_that_fires_wins(app):
    """A stale client state with an old generation is D3 (stale), not D6."""
    account = fxa_uid("rules-order")
    app.token(account, generation=1000, keys_changed_at=1000, state=A, status=200)
    app.token(account, generation=2000, keys_changed_at=2000, state=B, status=200)
    refused(app, account, client_state_error("stale value"),
            generation=500, keys_changed_at=500, state=A)


def test_e_newer_values_are_stored_in_place(app):
    account = fxa_uid("rules-e")
    uid = app.token(account, generation=1000, keys_changed_at=1000, state=A,
                    status=200).json["uid"]
    assert app.token(account, generation=3000, keys_changed_at=2000, state=A,
                     status=200).json["uid"] == uid
    [row] = app.rows_of(account)
    assert (row["generation"], row["keys_changed_at"]) == (3000, 2000)


def test_e_a_newer_generation_without_any_keys_changed_at(app):
    account = fxa_uid("rules-e-g")
    uid = app.token(account, generation=1000, keys_changed_at=0, state=A, status=200).json["uid"]
    assert app.token(account, generation=2000, keys_changed_at=0, state=A,
                     status=200).json["uid"] == uid
    [row] = app.rows_of(account)
    assert (row["generation"], row["keys_changed_at"]) == (2000, None)


def test_e_without_a_generation_a_newer_keys_changed_at_becomes_it(app):
    account = fxa_uid("rules-e-k")
    app.token(account, generation=None, keys_changed_at=1000, state=A, status=200)
    app.token(account, generation=None, keys_changed_at=5000, state=A, status=200)
    [row] = app.rows_of(account)
    assert (row["generation"], row["keys_changed_at"]) == (5000, 5000)


def test_keys_changed_at_appearing_later_is_stored(app):
    """syncstorage-rs test_kid_change_during_gradual_tokenserver_rollout."""
    account = fxa_uid("rules-rollout")
    uid = app.token(account, generation=1000, keys_changed_at=0, state=A,
                    status=200).json["uid"]
    assert app.token(account, generation=1000, keys_changed_at=1000, state=A,
                     status=200).json["uid"] == uid
    assert app.rows_of(account)[0]["keys_changed_at"] == 1000
    new_uid = app.token(account, generation=None, keys_changed_at=2000, state=B,
                        status=200).json["uid"]
    assert new_uid != uid
    assert app.rows_of(account)[-1]["generation"] == 2000


def test_f_a_new_client_state_gets_a_new_uid_on_the_same_node(app):
    account = fxa_uid("rules-f")
    first = app.token(account, generation=1000, keys_changed_at=1000, state=A, status=200).json
    second = app.token(account, generation=2000, keys_changed_at=2000, state=B, status=200).json
    assert second["uid"] != first["uid"]
    assert second["api_endpoint"].rsplit("/", 1)[0] == first["api_endpoint"].rsplit("/", 1)[0]
    old, new = app.rows_of(account)
    assert old["uid"] == first["uid"] and new["uid"] == second["uid"]
    assert old["replaced_at"] == new["created_at"] and new["replaced_at"] is None
    assert old["node_id"] == new["node_id"]
    assert (new["generation"], new["keys_changed_at"], new["client_state"]) == (2000, 2000, B)
    # The old uid is never answered again; the new one is.
    assert app.token(account, generation=2000, keys_changed_at=2000, state=B,
                     status=200).json["uid"] == second["uid"]
    third = app.token(account, generation=3000, keys_changed_at=3000, state=C, status=200).json
    assert third["uid"] not in (first["uid"], second["uid"])


def test_a_race_is_repaired(app):
    """Step A: an older row still marked current gets replaced_at = the current row's created_at.

    (syncstorage-rs test_old_users_marked_as_replaced_in_race_recovery.)
    """
    account = fxa_uid("rules-race")
    uid = app.token(account, generation=1000, keys_changed_at=1000, state=A,
                    status=200).json["uid"]
    [row] = app.rows_of(account)
    email = f"{account}@api.accounts.firefox.com"
    app.execute("INSERT INTO token_users (email, fxa_uid, generation, client_state, "
                "keys_changed_at, created_at, node_id) VALUES (:email, :fxa, 1000, :state, 1000, "
                ":created, NULL)", email=email, fxa=account, state=A,
                created=row["created_at"] + 10)
    answered = app.token(account, generation=1000, keys_changed_at=1000, state=A,
                         status=200).json["uid"]
    first, second = app.rows_of(account)
    assert answered == second["uid"] != uid
    assert first["replaced_at"] == second["created_at"] and second["replaced_at"] is None


def test_a_race_row_with_another_client_state_makes_it_stale(app):
    account = fxa_uid("rules-race-state")
    app.token(account, generation=1000, keys_changed_at=1000, state=A, status=200)
    [row] = app.rows_of(account)
    app.execute("INSERT INTO token_users (email, fxa_uid, generation, client_state, "
                "keys_changed_at, created_at) VALUES (:email, :fxa, 900, :state, 900, :created)",
                email=f"{account}@api.accounts.firefox.com", fxa=account, state=B,
                created=row["created_at"] + 10)
    app.token(account, generation=1000, keys_changed_at=1000, state=A, status=200)
    assert app.rows_of(account)[1]["replaced_at"] is not None
    refused(app, account, client_state_error("stale value"),
            generation=2000, keys_changed_at=2000, state=B)


def test_a_retired_account_is_refused(app):
    account = fxa_uid("rules-retired")
    app.token(account, generation=1000, keys_changed_at=1000, state=A, status=200)
    app.execute("UPDATE token_users SET generation = :max WHERE fxa_uid = :fxa",
                max=MAX_GENERATION, fxa=account)
    refused(app, account, error_body("invalid-generation"),
            generation=2000, keys_changed_at=2000, state=A)


def test_a_key_id_with_a_different_client_state_header_changes_nothing(app):
    account = fxa_uid("rules-mismatch")
    app.token(account, state=A, status=200)
    refused(app, account, error_body("invalid-client-state"),
            generation=2000, keys_changed_at=2000, key_id_header=key_id(2000, B),
            client_state_header=C)
