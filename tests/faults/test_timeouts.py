"""A request stuck behind a lock or a silent database ends with 503 at the configured timeout.

The stuck request waits on a row lock held by another connection: the
database is up but the statement cannot finish. (A database that never
answers at all is test_database_down's frozen MariaDB.)
"""


import pytest
import sqlalchemy
import webtest

from syncserver.app import make_app
from syncserver.db import engines
from tests.faults.support import Account, assert_unavailable, bounded
from tests.support import app_settings

QUICK = {"storage.query_timeout": "2", "auth.query_timeout": "2", "global.retry_after": "120"}


@pytest.mark.parametrize("database", [
    pytest.param("mysql", marks=pytest.mark.mysql),
    pytest.param("postgresql", marks=pytest.mark.postgresql),
])
def test_write_stuck_on_a_lock_gives_503_and_the_lock_holder_wins(database, request):
    url = request.getfixturevalue(f"{database}_url")
    wsgi_app = make_app({}, **app_settings(url, **QUICK))
    app = webtest.TestApp(wsgi_app)
    erin = Account(app, "erin@example.com")
    app.put_json(f"{erin.root}/storage/tabs/a", {"payload": "acknowledged"},
                 headers=erin.headers)

    holder = sqlalchemy.create_engine(url)
    try:
        with holder.connect() as connection:
            connection.exec_driver_sql("SELECT last_modified FROM storage_users FOR UPDATE")
            assert_unavailable(bounded(lambda: app.put_json(
                f"{erin.root}/storage/tabs/a", {"payload": "stuck"}, headers=erin.headers,
                expect_errors=True)))
            connection.commit()
    finally:
        holder.dispose()

    # The stuck write left nothing behind: no half write, no lock.
    assert app.get(f"{erin.root}/storage/tabs/a", headers=erin.headers).json["payload"] == (
        "acknowledged")
    app.put_json(f"{erin.root}/storage/tabs/a", {"payload": "after"}, headers=erin.headers)
    wsgi_app.close()


def test_postgresql_connections_carry_the_statement_timeout(postgresql_url):
    engine = engines.create_engine(postgresql_url, query_timeout=7)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "7s"
            # The URL's own options (here the test schema's search_path) are kept.
            assert connection.exec_driver_sql("SHOW search_path").scalar().startswith("t_")
    finally:
        engine.dispose()


@pytest.mark.mysql
def test_mysql_lock_waits_end_on_the_server_before_the_client_gives_up(mysql_url):
    engine = engines.create_engine(mysql_url, query_timeout=5)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql(
                "SELECT @@SESSION.innodb_lock_wait_timeout").scalar() == 4
    finally:
        engine.dispose()
