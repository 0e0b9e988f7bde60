"""The token request's SQL is built once: a known account's request runs prepared statements.

Building a SELECT per request (and SQLAlchemy's cache key of each new
statement object) cost more than running it: the read path of a token
request (blocked?, the account's rows, the node-list probe) took about
twice as long as with statements built at import. The node-list probe now
rides along with the rows, and so does the blocked flag. bench/token_run.py
measures the whole request; this checks that no statement is rebuilt and
that one is run.
"""

from sqlalchemy import event

from tests.tokenserver.token_client import fxa_uid


def executed_statements(engine, request):
    """The statement objects ``engine`` executes while ``request()`` runs."""
    seen = []

    def listener(connection, clauseelement, multiparams, params, execution_options):
        seen.append(clauseelement)

    event.listen(engine, "before_execute", listener)
    try:
        request()
    finally:
        event.remove(engine, "before_execute", listener)
    return seen


def test_a_known_account_reuses_the_same_statements(token_app):
    app = token_app
    account = fxa_uid("statements")
    first_uid = app.token(account, status=200).json["uid"]
    engine = app.users.engine

    def ask():
        assert app.token(account, status=200).json["uid"] == first_uid

    first = executed_statements(engine, ask)
    second = executed_statements(engine, ask)
    # One: the account's rows, which also tell whether it is blocked and whether the
    # node list is empty.
    assert len(first) == len(second) == 1
    assert all(a is b for a, b in zip(first, second, strict=True))
