"""Running a hot Core statement straight on the driver's cursor, its SQL compiled once.

Every write runs the same handful of one-row statements (lock the user,
read the stored item, stamp the collection and the user). Through
``Connection.execute`` each costs SQLAlchemy's whole execution path (the
compiled-cache lookup, an execution context, parameter and result
processing), several times what SQLite takes to run it. Here a statement
is compiled once per dialect and then handed to the DBAPI cursor of the
transaction's connection, as :meth:`Connection.exec_driver_sql` would but
without its machinery.

Only statements that need nothing from SQLAlchemy at run time take this
path: no post-compile parameters, no bind or result processors (plain
integers and strings on every supported driver). One expanding parameter
(``id IN :ids``, a POST's read of the items it rewrites) is expanded here
on drivers with positional placeholders (SQLite, MySQL), as many ``?`` or
``%s`` as values, the SQL kept per count; an empty list, and PostgreSQL's
typed placeholders, go to SQLAlchemy.
Anything else, and any connection with cursor event listeners (tests count
statements that way), goes through ``Connection.execute`` unchanged, with
the same results.

Driver errors are raised as SQLAlchemy's (``IntegrityError``,
``OperationalError``...), as ``Connection.execute`` raises them, so callers
and :func:`syncserver.db.errors.translate_errors` see no difference; a
disconnect invalidates the connection as SQLAlchemy would.
"""

import contextlib

from sqlalchemy import exc

#: (statement, dialect name) -> (sql, parameter names or None for named, defaults, the
#: expanding parameter's name or None) or None when the statement must go through SQLAlchemy.
_COMPILED = {}
#: (statement, dialect name, count) -> (sql, parameter names) with the expanding one expanded.
_EXPANDED = {}
#: Placeholder of one value, for the positional paramstyles whose expansion is done here.
_PLACEHOLDERS = {"qmark": "?", "format": "%s"}


def _compile(statement, dialect):
    key = (statement, dialect.name)
    try:
        return _COMPILED[key]
    except KeyError:
        pass
    compiled = statement.compile(dialect=dialect)
    post_compile = list(compiled.post_compile_params)
    expanding = None
    if (len(post_compile) == 1 and post_compile[0].expanding and compiled.positional
            and dialect.paramstyle in _PLACEHOLDERS):
        expanding = compiled.bind_names[post_compile[0]]
        post_compile = []
    plain = (not post_compile and not compiled.literal_execute_params
             and not any(_processes(bind.type, dialect, "bind") for bind in compiled.bind_names)
             and not any(_processes(column.type, dialect, "result")
                         for column in getattr(compiled.statement, "selected_columns", ())))
    entry = None
    if plain:
        defaults = {name: bind.effective_value for bind, name in compiled.bind_names.items()
                    if not bind.required}
        order = tuple(compiled.positiontup) if compiled.positional else None
        entry = (compiled.string, order, defaults, expanding)
    _COMPILED[key] = entry
    return entry


def _expand(statement, dialect, entry, count):
    """``(sql, order)`` of ``entry`` with its expanding parameter as ``count`` placeholders."""
    key = (statement, dialect.name, count)
    try:
        return _EXPANDED[key]
    except KeyError:
        pass
    sql, order, _defaults, name = entry
    marks = ", ".join([_PLACEHOLDERS[dialect.paramstyle]] * count)
    expanded = (sql.replace(f"__[POSTCOMPILE_{name}]", marks), order)
    if len(_EXPANDED) < 4096:  # counts are bounded by the batch limits; stay bounded anyway
        _EXPANDED[key] = expanded
    return expanded


def _processes(type_, dialect, kind):
    """True when SQLAlchemy converts values of ``type_`` on their way to or from the driver."""
    impl = type_.dialect_impl(dialect)
    if kind == "bind":
        return impl.bind_processor(dialect) is not None
    return impl.result_processor(dialect, None) is not None


def _listened(connection):
    """True when cursor events are listened to (SQLAlchemy must then run the statement).

    Listeners on the engine (how tests count statements) or any on the
    connection itself; the engine's own "connect" and "begin" listeners do
    not count.
    """
    if connection._has_events:
        return True
    dispatch = connection.engine.dispatch
    return bool(dispatch.before_cursor_execute or dispatch.after_cursor_execute)


def _run(connection, statement, params, fetch):
    entry = _compile(statement, connection.dialect)
    if entry is None or _listened(connection):
        return _through_sqlalchemy(connection, statement, params, fetch)
    sql, order, defaults, expanding = entry
    if defaults:
        params = {**defaults, **params}
    if expanding is not None:
        values = params[expanding]
        if not values:  # SQLAlchemy renders an empty IN its own way
            return _through_sqlalchemy(connection, statement, params, fetch)
        sql, order = _expand(statement, connection.dialect, entry, len(values))
        bound = []
        for name in order:
            if name == expanding:
                bound.extend(values)
            else:
                bound.append(params[name])
        bound = tuple(bound)
    elif order is not None:
        bound = tuple(params[name] for name in order)
    else:
        bound = params
    dbapi_connection = connection.connection.dbapi_connection
    cursor = None
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute(sql, bound)
        if fetch == "one":
            row = cursor.fetchone()
            return tuple(row) if row is not None else None
        if fetch == "all":
            return [tuple(row) for row in cursor.fetchall()]
        return cursor.rowcount
    except connection.dialect.loaded_dbapi.Error as error:
        raise _wrapped(connection, dbapi_connection, cursor, sql, bound, error) from error
    finally:
        _close(cursor)


def _through_sqlalchemy(connection, statement, params, fetch):
    result = connection.execute(statement, params)
    if fetch == "one":
        return result.first()
    if fetch == "all":
        return result.all()
    return result.rowcount


def _close(cursor):
    """Close a cursor; on a connection that died, there is nothing left to close."""
    if cursor is None:
        return
    # The statement's own error (if any) is what matters.
    with contextlib.suppress(Exception):
        cursor.close()


def _wrapped(connection, dbapi_connection, cursor, sql, bound, error):
    dialect = connection.dialect
    disconnected = dialect.is_disconnect(error, dbapi_connection, cursor)
    if disconnected:
        connection.invalidate(error)
    return exc.DBAPIError.instance(sql, bound, error, dialect.loaded_dbapi.Error,
                                   hide_parameters=True, connection_invalidated=disconnected,
                                   dialect=dialect)


def first(connection, statement, params):
    """The first row of ``statement`` as a tuple, or None."""
    return _run(connection, statement, params, "one")


def all_rows(connection, statement, params):
    """Every row of ``statement`` as tuples."""
    return _run(connection, statement, params, "all")


def execute(connection, statement, params):
    """Run a DML ``statement``; returns the rows it matched (the driver's rowcount)."""
    return _run(connection, statement, params, None)


def executemany_sql(connection, sql, rows):
    """Run the driver-level ``sql`` once per row of ``rows`` (tuples, or dicts if named).

    As ``Connection.exec_driver_sql(sql, rows)``, which it uses when cursor
    events are listened to.
    """
    if _listened(connection):
        connection.exec_driver_sql(sql, rows)
        return
    dbapi_connection = connection.connection.dbapi_connection
    cursor = None
    try:
        cursor = dbapi_connection.cursor()
        if len(rows) == 1:
            cursor.execute(sql, rows[0])
        else:
            cursor.executemany(sql, rows)
    except connection.dialect.loaded_dbapi.Error as error:
        raise _wrapped(connection, dbapi_connection, cursor, sql, rows, error) from error
    finally:
        _close(cursor)


def transaction_control(connection, sql):
    """Run BEGIN, COMMIT or ROLLBACK straight on the driver, its errors raised as SQLAlchemy's.

    Like SQLAlchemy's own transaction control, it is not a statement that
    cursor events see.
    """
    dbapi_connection = connection.connection.dbapi_connection
    try:
        dbapi_connection.execute(sql)
    except connection.dialect.loaded_dbapi.Error as error:
        raise _wrapped(connection, dbapi_connection, None, sql, (), error) from error
