"""SQLAlchemy engines as every SQL backend needs them, on SQLite, MySQL and PostgreSQL.

One place decides how each database is driven so that the storage and the
authentication backends behave alike:

- **SQLite**: WAL journal, a busy timeout, and ``BEGIN IMMEDIATE`` for write
  transactions so that concurrent writers queue instead of failing on a lock
  upgrade. Reads run in autocommit (one statement, one snapshot). The folder
  of the database file is created on first start.
- **MySQL/MariaDB** (mysqlclient): READ COMMITTED, utf8mb4, pre-ping,
  connect/read/write timeouts.
- **PostgreSQL** (psycopg 3): pre-ping, connect timeout, statement timeout.

Pre-ping means a pooled connection that died (server restarted, connection
killed, ``wait_timeout``) is replaced at checkout instead of failing a
request, so the server recovers by itself when the database comes back.
"""

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
import weakref

import sqlalchemy
from sqlalchemy import event, exc

from syncserver.db import direct

SQLITE_BUSY_TIMEOUT_MS = 15000
#: WAL pages past which a committing SQLite connection checkpoints by itself (SQLite's
#: default is 1,000): only reached when the writers' own checkpoints cannot keep up.
SQLITE_BACKSTOP_CHECKPOINT_PAGES = 4000
#: A process's SQLite writers checkpoint after this many commits, or rows changed.
_CHECKPOINT_COMMITS, _CHECKPOINT_ROWS = 100, 1000

_log = logging.getLogger(__name__)


def create_engine(url, pool_size=10, pool_timeout=30, pool_recycle=3600,
                  connect_timeout=10, query_timeout=30):
    """Build an engine for ``url`` with the per-database behaviour described above.

    ``connect_timeout`` and ``query_timeout`` (seconds, 0 = none) bound how long
    a request can wait on a MySQL or PostgreSQL server that accepts TCP
    connections but never answers (stopped, overloaded, cut off): past them
    the request gets a 503 instead of hanging with a worker thread.
    """
    parsed = sqlalchemy.engine.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _create_sqlite_engine(parsed, pool_size, pool_timeout)
    options = dict(pool_size=pool_size, pool_timeout=pool_timeout,
                   pool_recycle=pool_recycle, pool_pre_ping=True, max_overflow=pool_size)
    if backend in ("mysql", "mariadb"):
        query = dict(parsed.query)
        query.setdefault("charset", "utf8mb4")
        parsed = parsed.set(query=query)
        return sqlalchemy.create_engine(
            parsed, isolation_level="READ COMMITTED",
            connect_args=_mysql_timeouts(connect_timeout, query_timeout), **options)
    if backend == "postgresql":
        parsed, connect_args = _postgresql_timeouts(parsed, connect_timeout, query_timeout)
        return sqlalchemy.create_engine(parsed, connect_args=connect_args, **options)
    return sqlalchemy.create_engine(parsed, **options)


def _mysql_timeouts(connect_timeout, query_timeout):
    """mysqlclient's socket timeouts: a silent server fails the call with error 2013."""
    args = {}
    if connect_timeout:
        args["connect_timeout"] = connect_timeout
    if query_timeout:
        # Client side, so they also end waits on a server that stopped answering.
        args["read_timeout"] = query_timeout
        args["write_timeout"] = query_timeout
        # A lock wait ends a second earlier on the server, with a clean error: the
        # transaction is rolled back at once instead of holding its locks until
        # the server notices that the client hung up.
        lock_wait = max(1, query_timeout - 1)
        args["init_command"] = f"SET SESSION innodb_lock_wait_timeout = {lock_wait}"
    return args


def _postgresql_timeouts(parsed, connect_timeout, query_timeout):
    """libpq's connect timeout and keepalives, and the server's statement_timeout.

    libpq has no read timeout: a server that is alive but stuck on a lock is
    bounded by ``statement_timeout``; one whose host vanished, by keepalives
    and ``tcp_user_timeout``. The statement timeout joins any ``options``
    already in the URL (such as a search_path).
    """
    args = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
            "keepalives_count": 3}
    if connect_timeout:
        args["connect_timeout"] = connect_timeout
    if query_timeout:
        args["tcp_user_timeout"] = query_timeout * 1000
        query = dict(parsed.query)
        existing = query.get("options") or ""
        if isinstance(existing, tuple):
            existing = " ".join(existing)
        statement_timeout = f"-c statement_timeout={query_timeout * 1000}"
        query["options"] = f"{existing} {statement_timeout}".strip()
        parsed = parsed.set(query=query)
    return parsed, args


def _create_sqlite_engine(parsed, pool_size, pool_timeout):
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        folder = os.path.dirname(os.path.abspath(database))
        os.makedirs(folder, mode=0o700, exist_ok=True)
        _register_writer_queue(database)
    engine = sqlalchemy.create_engine(
        parsed, pool_size=pool_size, max_overflow=pool_size, pool_timeout=pool_timeout,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record):
        # Take transaction control away from the driver: we emit BEGIN ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # Takes effect only in a file without tables yet: new databases can give
        # space back after a purge (StorageBackend.reclaim_space); a no-op otherwise.
        cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        # The server's writers checkpoint outside their queue (see write_transaction);
        # SQLite's own, run by a committing writer, is left as the backstop.
        cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_BACKSTOP_CHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):
        # Reads run without BEGIN (the driver is in autocommit): each statement
        # sees one consistent snapshot and never takes the write lock. The kept
        # write connection's transactions are begun by write_transaction itself.
        options = connection.get_execution_options()
        if not (options.get(_READ_ONLY) or options.get(_DRIVER_TRANSACTIONS)):
            # Straight to the driver: this runs on every write, and SQLAlchemy's
            # statement machinery would cost as much as the BEGIN itself.
            connection.connection.dbapi_connection.execute("BEGIN IMMEDIATE")

    return engine


def _enable_wal(cursor):
    """Switch the file to WAL, retrying while another connection holds it.

    Turning a new file to WAL needs it to itself, and SQLite answers "database
    is locked" at once, without its busy handler, when two processes (or
    threads) open a new database at the same moment.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def is_sqlite(engine):
    return engine.dialect.name == "sqlite"


_READ_ONLY = "syncserver_read_only"
#: A SQLite connection whose transactions are begun and ended on the driver (see
#: _driver_transaction); SQLAlchemy's own (autobegun once) is only nominal there.
_DRIVER_TRANSACTIONS = "syncserver_driver_transactions"


@contextlib.contextmanager
def read_connection(engine):
    """A connection for reads: no write lock on SQLite, READ COMMITTED elsewhere.

    Isolation levels are not switched per checkout: that costs a round trip
    (MySQL) or a driver reconfiguration (SQLite) on every read.

    On SQLite each thread keeps one read connection checked out while the
    pool has room (a checkout and its return cost more than the read of
    info/collections itself): reads run in autocommit there, so a kept
    connection holds no snapshot or lock between requests. A nested read in
    the same thread, or a connection that went bad, gets an ordinary one.
    """
    kept = _kept_connection(engine, _KEPT_READS, {_READ_ONLY: True}) if is_sqlite(engine) else None
    if kept is None:
        with engine.connect() as connection:
            yield connection.execution_options(**{_READ_ONLY: True})
        return
    with _lent(*kept) as connection:
        yield connection


@contextlib.contextmanager
def _lent(holder, connection):
    """Use a kept read connection; give up a bad one.

    A connection that failed, or that its user left in a transaction (a
    streamed answer's snapshot, which its return to the pool ends), is not
    kept: the next user starts from a fresh one.
    """
    holder.busy = True
    healthy = False
    try:
        yield connection
        healthy = not connection.connection.dbapi_connection.in_transaction
    finally:
        holder.busy = False
        if not healthy:
            _give_up(holder, connection)


def _give_up(holder, connection):
    holder.connection = None
    with contextlib.suppress(Exception):
        connection.close()


@contextlib.contextmanager
def _driver_transaction(holder, connection):
    """One write transaction on the kept write connection, begun and ended on the driver.

    Why not ``Connection.begin()``: SQLAlchemy's transaction object, its
    events and its commit path cost a SQLite write about as much as its
    statements do, and a write holds the file's writer queue meanwhile, so
    every queued writer waits for that too. SQLAlchemy's own transaction on
    this connection is begun once (its "begin" emits nothing here, see
    _DRIVER_TRANSACTIONS) and never ended, so statements run through it
    as in any transaction; BEGIN IMMEDIATE, COMMIT and ROLLBACK go to the
    driver. A write that fails is rolled back and the connection kept; one
    that cannot be rolled back, or that was invalidated, is given up.
    """
    holder.busy = True
    try:
        direct.transaction_control(connection, "BEGIN IMMEDIATE")
        try:
            yield connection
            direct.transaction_control(connection, "COMMIT")
        except BaseException:
            if _in_transaction(connection):
                # The write's own error is the one to raise; a connection that
                # cannot roll back is given up below.
                with contextlib.suppress(exc.DBAPIError):
                    direct.transaction_control(connection, "ROLLBACK")
            raise
    finally:
        holder.busy = False
        if connection.invalidated or _in_transaction(connection) is not False:
            _give_up(holder, connection)


def _in_transaction(connection):
    """Whether the driver's connection is in a transaction; None when it cannot say (closed)."""
    if connection.invalidated:
        return None
    try:
        return connection.connection.dbapi_connection.in_transaction
    except sqlite3.Error:
        return None


class _KeptConnections(threading.local):
    """Per thread: ``{engine: holder}`` of kept SQLite connections (one kind)."""

    def __init__(self):
        self.holders = weakref.WeakKeyDictionary()


class _SharedConnections:
    """Per process: ``{engine: holder}``, for connections used under a lock (the writers').

    Writers to a SQLite file take turns (:class:`_SQLiteWriterQueue`), so one
    kept connection serves them all; one per thread would take a pooled
    connection from each of a threaded server's threads for nothing.
    """

    def __init__(self):
        self.holders = weakref.WeakKeyDictionary()


class _Holder:
    __slots__ = ("__weakref__", "busy", "connection", "finalizer", "pid")

    def __init__(self):
        self.busy = False
        self.connection = None
        self.finalizer = None
        self.pid = os.getpid()


_KEPT_READS = _KeptConnections()
#: Only ever used while holding the file's writer queue, whose thread lock serialises it.
_KEPT_WRITES = _SharedConnections()
#: engine -> every thread's holders for it, so that closing the engine can release them.
_HOLDERS = weakref.WeakKeyDictionary()
_HOLDERS_LOCK = threading.Lock()


def dispose(engine):
    """Close every pooled connection of ``engine``, those kept by threads included.

    A kept connection in use right now is left to its thread (it closes it
    if it fails, or keeps it); it is not shared, so closing it here would
    pull it from under a running statement.
    """
    with _HOLDERS_LOCK:
        holders = list(_HOLDERS.get(engine, ()))
    for holder in holders:
        connection = holder.connection
        if connection is not None and not holder.busy and holder.pid == os.getpid():
            holder.connection = None
            if holder.finalizer is not None:
                holder.finalizer.detach()
                holder.finalizer = None
            with contextlib.suppress(Exception):
                connection.close()
    engine.dispose()


def _kept_connection(engine, kept, options):
    """``(holder, connection)`` kept in ``kept``, or None: use an ordinary one.

    ``kept`` holds them per thread (reads) or per process (writes, which queue).
    """
    holder = kept.holders.get(engine)
    if holder is None or holder.pid != os.getpid():
        if holder is not None and holder.finalizer is not None:
            # Forked after this thread kept a connection: the parent's, not ours to close.
            holder.finalizer.detach()
        holder = kept.holders[engine] = _Holder()
        with _HOLDERS_LOCK:
            _HOLDERS.setdefault(engine, weakref.WeakSet()).add(holder)
    if holder.busy:
        return None
    connection = holder.connection
    if connection is None or connection.closed or connection.invalidated:
        pool = engine.pool
        if not (hasattr(pool, "checkedout") and hasattr(pool, "size")):
            return None  # a pool without a size (not the QueuePool this module builds)
        # Keep one only while the pool's base size has room: its overflow (as
        # large again, see _create_sqlite_engine) stays free for the others.
        if pool.checkedout() >= max(1, pool.size()):
            return None
        connection = engine.connect()
        if options:
            connection = connection.execution_options(**options)
            if options.get(_DRIVER_TRANSACTIONS):
                # Its nominal transaction, begun now (nothing is emitted) so that no
                # user of the connection (Alembic, say) begins and commits one of its own.
                connection.begin()
        holder.connection = connection
        # Returned to the pool when the thread ends or the engine goes away.
        if holder.finalizer is not None:
            holder.finalizer.detach()  # the previous connection was closed already
        holder.finalizer = weakref.finalize(holder, connection.close)
    return holder, connection


@contextlib.contextmanager
def write_transaction(engine):
    """A transaction for writes; committed on success, rolled back on any error.

    On SQLite it holds the database write lock from its first statement, and
    writers queue on a file lock first (see :class:`_SQLiteWriterQueue`).

    SQLite checkpoints the WAL (copies it into the database file: tens of
    milliseconds, an fsync) inside the COMMIT that fills it past
    ``wal_autocheckpoint`` pages, so that writer held the queue meanwhile
    and every queued writer waited for it (under 16 clients writing, 1% of
    the writes held the queue for a fifth of its time). Here
    a writer whose commit makes :data:`_CHECKPOINT_COMMITS` commits or
    :data:`_CHECKPOINT_ROWS` rows since the last checkpoint does a PASSIVE
    one once it has left the queue (on a read connection: it needs no write
    lock and others write meanwhile); SQLite's own stays as a backstop at
    :data:`SQLITE_BACKSTOP_CHECKPOINT_PAGES`. Paired runs under waitress:
    850-1,220 PUTs/s against 815-1,010 with the checkpoint in the COMMIT.
    """
    queue = _WRITER_QUEUES.get(engine.url.database) if is_sqlite(engine) else None
    if queue is None:
        with engine.begin() as connection:
            yield connection
        return
    with queue:
        # The process keeps one connection for its writes while the pool has
        # room (checking one out and back costs about a fifth of a PUT); the
        # queue lets one thread at a time use it. A nested write in the same
        # thread finds it busy and gets an ordinary one.
        kept = _kept_connection(engine, _KEPT_WRITES, {_DRIVER_TRANSACTIONS: True})
        if kept is None:
            with engine.begin() as connection:
                yield connection
            return
        with _driver_transaction(*kept) as connection:
            yield connection
        checkpoint = queue.checkpoint_due(connection.connection.dbapi_connection.total_changes)
    if checkpoint:
        _checkpoint(engine, queue)


def _checkpoint(engine, queue):
    """A PASSIVE checkpoint, unless another thread of the process is doing one."""
    if not queue.checkpointing.acquire(blocking=False):
        return
    try:
        with read_connection(engine) as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").all()
    except exc.DBAPIError as error:
        # The write is committed: its answer stands. The backstop checkpoints later.
        _log.warning("SQLite WAL checkpoint failed (%s); SQLite's own will follow", error.orig)
    finally:
        queue.checkpointing.release()


class _SQLiteWriterQueue:
    """Lets one writer at a time at a SQLite file, across threads and processes.

    Why: SQLite makes a writer that finds the database locked sleep in its
    busy handler before it tries again, for longer and longer (1, 2, 5, 10
    ... 100 ms), so under many small writes (PUTs) a writer could wait
    100 ms for a lock free for most of that time.

    Processes queue on a file lock (``flock``) held by the writing thread:
    the kernel wakes the next one the moment it is free, and a thread of
    another process does not compete with this one for anything else.

    Threads of a process take a thread lock; one that finds it held sleeps
    :data:`_FIRST_TURN_PAUSE` (0.5 ms, doubling to 2 ms) between tries instead
    of blocking on it. Measured under waitress (8 threads, 16 clients
    writing): when the leaving writer woke the next thread at once, that
    thread and the leaving one (answering its client, reading its next
    request) then took turns on the interpreter lock throughout the next
    write, which every queued writer waits for: 300-570 PUTs/s, 70-150
    context switches per PUT. With the short sleeps, waiting threads stay
    off the interpreter while a write runs: 860-940 PUTs/s, about 24
    switches per PUT, and a lower p99 (100-130 ms against 141 ms). Only
    one waiting thread at a time tries; the others block until it got its
    turn (paired runs: POST 100 160-169 against 150-162 per second, 24
    instead of 70 switches per POST; PUT 739-838 against 703-807). The
    trying thread, once it has waited :data:`_STARVING_SECONDS`, keeps
    newcomers from taking the lock before it.

    A writer that leaves while others of its process wait hands the file
    lock on to the next one instead of releasing it, at most
    :data:`_HANDOVERS` times in a row (then other processes get their
    turn): each ``flock`` call lets go of the interpreter. SQLite's own
    locking still guarantees correctness; this only orders the writers.
    """

    def __init__(self, database_path):
        self._path = database_path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._owner = None  # the thread holding the thread lock
        #: Threads of this process waiting for the thread lock, and of them those
        #: waiting past _STARVING_SECONDS (both under _count_lock).
        self._waiting = 0
        self._starving = 0
        self._count_lock = threading.Lock()
        #: Held by the one waiting thread that tries the thread lock (see _wait_for_turn).
        self._trying = threading.Lock()
        self._fd = None
        self._open()
        #: Held by the thread checkpointing the WAL (see write_transaction).
        self.checkpointing = threading.Lock()
        self._commits = 0
        self._changes_at_checkpoint = None

    def checkpoint_due(self, total_changes):
        """Count a commit (inside the queue); True when the writer should checkpoint after.

        ``total_changes``: the write connection's count of rows changed so far.
        """
        self._commits += 1
        if self._changes_at_checkpoint is None or total_changes < self._changes_at_checkpoint:
            self._changes_at_checkpoint = total_changes  # a new connection counts from 0
        if (self._commits < _CHECKPOINT_COMMITS
                and total_changes - self._changes_at_checkpoint < _CHECKPOINT_ROWS):
            return False
        self._commits = 0
        self._changes_at_checkpoint = total_changes
        return True

    def _open(self):
        """The lock file, opened by this process: after a fork the parent's is shared."""
        if self._fd is not None:
            os.close(self._fd)  # the parent's description: closing our copy leaves its lock
        self._pid = os.getpid()
        self._fd = os.open(self._path + "-writers.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._file_locked = False
        self._handovers = 0

    def __enter__(self):
        if self._owner == threading.get_ident():  # a write nested in this thread's own
            self._thread_lock.acquire()
        elif not ((not self._starving and self._thread_lock.acquire(blocking=False))
                  or self._wait_for_turn()):  # counted only when it has to wait: see __exit__
            raise exc.OperationalError("waiting for the SQLite write lock", None,
                                       TimeoutError("database is locked"))
        try:
            if self._depth == 0:
                self._owner = threading.get_ident()
                if self._pid != os.getpid():
                    self._open()
                if not self._file_locked:
                    fcntl.flock(self._fd, fcntl.LOCK_EX)
                    self._file_locked = True
            self._depth += 1
        except BaseException:
            if self._depth == 0:
                self._owner = None
            self._thread_lock.release()
            raise
        return self

    def __exit__(self, *exc_info):
        try:
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                if self._waiting and self._handovers < _HANDOVERS:
                    self._handovers += 1  # the next writer of this process takes it as it is
                else:
                    self._handovers = 0
                    self._file_locked = False
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def _wait_for_turn(self):
        """Try the thread lock between short sleeps; False once the busy timeout has passed.

        One waiting thread at a time tries (the others wait to be the one that
        tries, blocked): each try takes the interpreter from the writer.
        """
        started = time.monotonic()
        deadline = started + SQLITE_BUSY_TIMEOUT_MS / 1000
        starving = False
        with self._count_lock:
            self._waiting += 1
        try:
            if not self._trying.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
                return self._thread_lock.acquire(blocking=False)
            try:
                pause = _FIRST_TURN_PAUSE
                while True:
                    time.sleep(pause)
                    pause = min(2 * pause, _LONGEST_TURN_PAUSE)
                    # A starving thread tries even while it is the one keeping newcomers out.
                    if ((starving or not self._starving)
                            and self._thread_lock.acquire(blocking=False)):
                        return True
                    now = time.monotonic()
                    if now > deadline:
                        # Free the moment the wait timed out: take it rather than fail.
                        return self._thread_lock.acquire(blocking=False)
                    if not starving and now - started > _STARVING_SECONDS:
                        starving = True
                        with self._count_lock:
                            self._starving += 1
            finally:
                self._trying.release()
        finally:
            with self._count_lock:
                self._waiting -= 1
                if starving:
                    self._starving -= 1


#: Writers of one process that take the file lock over from each other in a row, at most.
_HANDOVERS = 8
#: A thread waiting for its process's write turn sleeps this long before its first
#: try (seconds), then twice as long each time up to _LONGEST_TURN_PAUSE.
_FIRST_TURN_PAUSE, _LONGEST_TURN_PAUSE = 0.0005, 0.002
#: Past this long waiting, a thread keeps newcomers from taking the turn before it.
_STARVING_SECONDS = 0.05


#: Database path -> queue, shared by every engine of the process on that file.
_WRITER_QUEUES = {}
_WRITER_QUEUES_LOCK = threading.Lock()


def _register_writer_queue(database):
    path = os.path.abspath(database)
    with _WRITER_QUEUES_LOCK:
        if database not in _WRITER_QUEUES:
            _WRITER_QUEUES[database] = _SQLiteWriterQueue(path)
