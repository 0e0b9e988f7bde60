"""Database.attempts: a write block that a deadlock ended runs again, and only then.

Real deadlocks of storage writes, on MariaDB and PostgreSQL, are in
tests/storage/test_sql_purge_one_account.py; here the loop's rules, with
the errors the drivers raise built by hand (three deadlocks in a row cannot
be caused on demand).
"""

import logging

import pytest
from sqlalchemy import exc

from syncserver.db import Database
from syncserver.db.errors import is_transient_conflict
from syncserver.errors import BackendUnavailable


class DriverError(Exception):
    """What MySQLdb raises: (code, message)."""


def failure(code, message):
    """The BackendUnavailable a write block sees for a driver error with ``code``."""
    cause = exc.OperationalError("UPDATE things", {}, DriverError(code, message))
    error = BackendUnavailable(f"database unavailable: {message}")
    error.__cause__ = cause
    return error


DEADLOCK = (1213, "Deadlock found when trying to get lock")
LOCK_WAIT_TIMEOUT = (1205, "Lock wait timeout exceeded")


def run(failures, **options):
    """Run a block that raises ``failures`` in turn, then returns; (outcome, tries)."""
    tries = []
    for attempt in Database.attempts(BackendUnavailable, **options):
        with attempt:
            tries.append(1)
            if len(tries) <= len(failures):
                raise failure(*failures[len(tries) - 1])
            outcome = "done"
    return outcome, len(tries)


def test_a_deadlock_runs_the_block_again_and_says_so(caplog):
    caplog.set_level(logging.INFO, logger="syncserver.db")
    assert run([DEADLOCK], what="storage write") == ("done", 2)
    assert [record.getMessage() for record in caplog.records] == [
        "storage write retried after database unavailable: "
        "Deadlock found when trying to get lock"]


def test_a_block_that_succeeds_runs_once():
    assert run([]) == ("done", 1)


def test_the_last_tries_deadlock_propagates():
    with pytest.raises(BackendUnavailable, match="Deadlock"):
        run([DEADLOCK] * 3)
    assert run([DEADLOCK] * 2) == ("done", 3)
    assert run([DEADLOCK] * 4, attempts=5) == ("done", 5)


def test_a_lock_wait_timeout_is_not_retried_unless_asked():
    """A timeout already took its whole wait: a write does not wait a second time."""
    with pytest.raises(BackendUnavailable, match="Lock wait"):
        run([LOCK_WAIT_TIMEOUT])
    assert run([LOCK_WAIT_TIMEOUT], retry_on=is_transient_conflict) == ("done", 2)


def test_other_errors_propagate_at_once():
    tries = []
    with pytest.raises(ValueError):
        for attempt in Database.attempts(BackendUnavailable):
            with attempt:
                tries.append(1)
                raise ValueError("a bug")
    assert tries == [1]
    with pytest.raises(BackendUnavailable, match="gone away"):
        run([(2006, "MySQL server has gone away")])


def test_a_postgresql_deadlock_is_recognised():
    class PostgresError(Exception):
        sqlstate = "40P01"

    error = BackendUnavailable("database unavailable: deadlock detected")
    error.__cause__ = exc.OperationalError("UPDATE things", {}, PostgresError())
    tries = []
    for attempt in Database.attempts(BackendUnavailable):
        with attempt:
            tries.append(1)
            if len(tries) == 1:
                raise error
    assert len(tries) == 2
