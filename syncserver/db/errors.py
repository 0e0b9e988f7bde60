"""Which database failures mean "the service is not there", and turning them into 503s.

Connection refused or lost, a pool timeout, a statement timeout: the caller's
"unavailable" exception (a :class:`~syncserver.errors.BackendUnavailable`,
which the application answers with 503 and ``Retry-After``). Everything else
(a constraint violation, a bug in a statement) propagates as it is.
"""

import contextlib

from sqlalchemy import exc

# MySQL/MariaDB "deadlock found" (1213) and "lock wait timeout" (1205);
# PostgreSQL deadlock (40P01) and serialization failure (40001).
_MYSQL_DEADLOCK = 1213
_MYSQL_CONFLICT_CODES = frozenset({_MYSQL_DEADLOCK, 1205})
_POSTGRESQL_CONFLICT_STATES = frozenset({"40P01", "40001"})


def is_transient_conflict(error):
    """True when ``error`` (a SQLAlchemy error) is a lock conflict that a retry resolves.

    A deadlock or lock wait between concurrent writers, not an outage: the
    transaction was rolled back and running it again is the answer.
    """
    postgresql_state, mysql_code = _conflict_codes(error)
    return postgresql_state in _POSTGRESQL_CONFLICT_STATES or mysql_code in _MYSQL_CONFLICT_CODES


def is_deadlock(error):
    """True when ``error`` is a deadlock (or serialization failure) the database ended at once.

    Unlike a lock wait timeout, nothing waited long: running the rolled-back
    transaction again is cheap and, the other transaction having gone on,
    normally succeeds.
    """
    postgresql_state, mysql_code = _conflict_codes(error)
    return postgresql_state in _POSTGRESQL_CONFLICT_STATES or mysql_code == _MYSQL_DEADLOCK


def _conflict_codes(error):
    """``(PostgreSQL SQLSTATE, MySQL error number)`` of the driver error under ``error``."""
    original = getattr(error, "orig", None)
    args = getattr(original, "args", None)
    return getattr(original, "sqlstate", None), (args[0] if args else None)


def is_unavailable(error):
    """True when ``error`` means the database cannot be reached or used right now."""
    if isinstance(error, (exc.OperationalError, exc.TimeoutError, exc.InterfaceError)):
        return True
    return isinstance(error, exc.DBAPIError) and bool(error.connection_invalidated)


@contextlib.contextmanager
def translate_errors(unavailable_class):
    """Re-raise database-unreachable errors as ``unavailable_class`` (a 503 upstream).

    The original error is chained, so the crash log keeps its traceback;
    the message never includes the SQL parameters (they may hold payloads
    or password hashes).
    """
    try:
        yield
    except exc.SQLAlchemyError as error:
        if is_unavailable(error):
            original = getattr(error, "orig", None) or error
            raise unavailable_class(
                f"database unavailable: {type(original).__name__}: {_first_line(original)}"
            ) from error
        raise


def _first_line(error):
    # DBAPI errors carry (code, message) or (message,); neither holds query parameters.
    args = getattr(error, "args", None) or (error,)
    text = " ".join(str(arg) for arg in args)
    return text.splitlines()[0][:200] if text else ""
