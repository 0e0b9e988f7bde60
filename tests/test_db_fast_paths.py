"""The database layer's fast paths: kept SQLite read connections, statements on the cursor."""

import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, exc, select

from syncserver.db import direct, engines

metadata = MetaData()
things = Table("things", metadata, Column("id", Integer, primary_key=True),
               Column("name", String(20), nullable=False))
BY_ID = select(things.c.name).where(things.c.id == bindparam("id"))
INSERT = things.insert().values(id=bindparam("id"), name=bindparam("name"))


@pytest.fixture
def engine(tmp_path):
    engine = engines.create_engine(f"sqlite:///{tmp_path / 'fast.db'}")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def test_a_kept_read_connection_sees_every_commit(engine):
    with engines.read_connection(engine) as first:
        assert direct.first(first, BY_ID, {"id": 1}) is None
    with engines.write_transaction(engine) as connection:
        direct.execute(connection, INSERT, {"id": 1, "name": "one"})
    with engines.read_connection(engine) as again:
        assert again is first  # kept for this thread
        assert direct.first(again, BY_ID, {"id": 1}) == ("one",)


def test_a_reader_left_in_a_transaction_does_not_pass_it_on(engine):
    with engines.read_connection(engine) as connection:
        connection.exec_driver_sql("BEGIN")  # as a streamed answer's snapshot does
        kept = connection
    with engines.read_connection(engine) as connection:
        assert connection is not kept
        assert not connection.connection.dbapi_connection.in_transaction
    assert engine.pool.checkedout() == 1  # the new kept one; the other went back


def test_nested_reads_and_other_threads_get_their_own_connections(engine):
    seen = []
    with engines.read_connection(engine) as outer, engines.read_connection(engine) as inner:
        assert inner is not outer

    def other():
        with engines.read_connection(engine) as connection:
            seen.append(connection)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert seen and seen[0] is not outer


def test_driver_errors_come_as_sqlalchemys_and_the_transaction_rolls_back(engine):
    with engines.write_transaction(engine) as connection:
        direct.execute(connection, INSERT, {"id": 7, "name": "seven"})
    with pytest.raises(exc.IntegrityError):
        with engines.write_transaction(engine) as connection:
            direct.execute(connection, INSERT, {"id": 8, "name": "eight"})
            direct.execute(connection, INSERT, {"id": 7, "name": "again"})
    with engines.read_connection(engine) as connection:
        assert direct.all_rows(connection, select(things.c.id).order_by(things.c.id), {}) == [
            (7,)]


def test_listened_statements_go_through_sqlalchemy(engine):
    statements = []
    sqlalchemy.event.listen(engine, "before_cursor_execute",
                            lambda _c, _cur, statement, *_rest: statements.append(statement))
    with engines.write_transaction(engine) as connection:
        direct.execute(connection, INSERT, {"id": 3, "name": "three"})
        assert direct.first(connection, BY_ID, {"id": 3}) == ("three",)
    assert len([s for s in statements if s.startswith(("INSERT", "SELECT"))]) == 2


def test_a_kept_write_connection_commits_rolls_back_and_a_broken_one_is_replaced(engine):
    with engines.write_transaction(engine) as first:
        direct.execute(first, INSERT, {"id": 1, "name": "one"})
    with engines.write_transaction(engine) as second:
        assert second is first  # kept for the process's writers
        assert second.connection.dbapi_connection.in_transaction  # BEGIN IMMEDIATE ran
        direct.execute(second, INSERT, {"id": 2, "name": "two"})
    with pytest.raises(exc.IntegrityError):
        with engines.write_transaction(engine) as third:
            direct.execute(third, INSERT, {"id": 3, "name": "three"})
            direct.execute(third, INSERT, {"id": 1, "name": "again"})
    with pytest.raises(RuntimeError):
        with engines.write_transaction(engine) as fourth:
            direct.execute(fourth, INSERT, {"id": 4, "name": "four"})
            raise RuntimeError("a bug in the write")
    with engines.write_transaction(engine) as fifth:
        assert fifth is first  # rolled back cleanly: still the kept one
        assert not engine.pool.checkedout() > 1
        direct.execute(fifth, INSERT, {"id": 5, "name": "five"})
    with pytest.raises(exc.DBAPIError):
        with engines.write_transaction(engine) as sixth:
            sixth.connection.dbapi_connection.close()  # the connection dies under the write
            direct.execute(sixth, INSERT, {"id": 6, "name": "six"})
    with engines.write_transaction(engine) as seventh:
        assert seventh is not first  # given up: a fresh one
        direct.execute(seventh, INSERT, {"id": 7, "name": "seven"})
    # Another connection sees exactly the committed rows.
    plain = sqlite3.connect(engine.url.database)
    try:
        assert plain.execute("SELECT id FROM things ORDER BY id").fetchall() == [
            (1,), (2,), (5,), (7,)]
        plain.execute("BEGIN IMMEDIATE")  # no transaction of ours holds the write lock
        plain.rollback()
    finally:
        plain.close()


def test_statements_through_sqlalchemy_join_the_drivers_transaction(engine):
    """The kept write connection's SQLAlchemy transaction is nominal: its statements are ours."""
    with pytest.raises(RuntimeError):
        with engines.write_transaction(engine) as connection:
            connection.execute(INSERT, {"id": 1, "name": "one"})
            direct.execute(connection, INSERT, {"id": 2, "name": "two"})
            raise RuntimeError("roll both back")
    with engines.write_transaction(engine) as connection:
        connection.execute(INSERT, {"id": 3, "name": "three"})
    with engines.read_connection(engine) as connection:
        assert direct.all_rows(connection, select(things.c.id), {}) == [(3,)]


def test_threads_take_turns_on_one_kept_write_connection(engine):
    """Writers queue anyway: one kept connection serves every thread, one at a time."""
    used, inside, overlaps = [], [], []
    guard = threading.Lock()

    def writer(number):
        for round_ in range(20):
            with engines.write_transaction(engine) as connection:
                with guard:
                    overlaps.append(len(inside))
                    inside.append(number)
                used.append(connection)
                direct.execute(connection, INSERT, {"id": number * 100 + round_,
                                                    "name": f"{number}-{round_}"})
                with guard:
                    inside.remove(number)

    threads = [threading.Thread(target=writer, args=(number,)) for number in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(overlaps) == {0}  # never two writers inside at once
    assert len({id(connection) for connection in used}) == 1
    with engines.read_connection(engine) as connection:
        assert connection.execute(sqlalchemy.text("SELECT count(*) FROM things")).scalar() == 160


def test_each_of_a_threaded_servers_threads_keeps_its_read_connection(engine):
    """Eight threads (waitress's default here) each keep one with the default pool of 10."""
    kept, ready = {}, threading.Barrier(8)

    def reader(number):
        with engines.read_connection(engine) as connection:
            first = connection
        ready.wait()  # all eight hold theirs now
        with engines.read_connection(engine) as connection:
            kept[number] = connection is first

    threads = [threading.Thread(target=reader, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert kept == dict.fromkeys(range(8), True)


def test_a_forked_process_does_not_use_its_parents_kept_connection(engine):
    with engines.read_connection(engine) as parents:
        pass
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether it was given the parent's connection
        try:
            with engines.read_connection(engine) as childs:
                same = childs is parents
                childs.exec_driver_sql("SELECT 1").scalar()
            os.write(writer, b"same" if same else b"own")
        finally:
            os._exit(0)
    os.close(writer)
    answer = os.read(reader, 10)
    os.close(reader)
    os.waitpid(pid, 0)
    assert answer == b"own"
    with engines.read_connection(engine) as again:
        assert again is parents


def test_closing_the_database_releases_kept_connections(engine):
    with engines.read_connection(engine) as reads:
        pass
    with engines.write_transaction(engine) as writes:
        direct.execute(writes, INSERT, {"id": 9, "name": "nine"})
    assert engine.pool.checkedout() == 2  # one kept for reads, one for writes
    engines.dispose(engine)
    assert reads.closed and writes.closed
    with engines.read_connection(engine) as connection:  # still usable: it reconnects
        assert direct.first(connection, BY_ID, {"id": 9}) == ("nine",)


BY_IDS = select(things.c.id, things.c.name).where(
    things.c.id.in_(bindparam("ids", expanding=True))).order_by(things.c.id)


def test_one_expanding_parameter_is_expanded_on_the_cursor(engine):
    with engines.write_transaction(engine) as connection:
        for number in range(1, 8):
            direct.execute(connection, INSERT, {"id": number, "name": f"n{number}"})
    with engines.read_connection(engine) as connection:
        for ids in ([3], [1, 5, 7], [2, 4, 99], list(range(1, 8))):
            assert direct.all_rows(connection, BY_IDS, {"ids": ids}) == [
                tuple(row) for row in connection.execute(BY_IDS, {"ids": ids}).all()]
            assert (BY_IDS, "sqlite", len(ids)) in direct._EXPANDED  # it did not go to SQLAlchemy
        # An empty list is SQLAlchemy's to render (no "IN ()").
        assert list(direct.all_rows(connection, BY_IDS, {"ids": []})) == []
        assert (BY_IDS, "sqlite", 0) not in direct._EXPANDED


def _writer_threads(engine, count, rounds, first_id, stop=None):
    """``count`` threads each writing ``rounds`` rows (or until ``stop`` is set)."""
    def writer(number):
        for round_ in range(rounds):
            if stop is not None and stop.is_set():
                return
            with engines.write_transaction(engine) as connection:
                direct.execute(connection, INSERT, {
                    "id": first_id + number * rounds + round_, "name": "thread"})

    threads = [threading.Thread(target=writer, args=(number,)) for number in range(count)]
    for thread in threads:
        thread.start()
    return threads


def test_writers_of_one_process_hand_the_file_lock_on(engine, monkeypatch):
    """A writer leaving while others of its process wait does not release the file lock."""
    real_flock = engines.fcntl.flock
    taken = []

    def counting_flock(fd, operation):
        if operation == engines.fcntl.LOCK_EX:
            taken.append(fd)
        return real_flock(fd, operation)

    monkeypatch.setattr(engines.fcntl, "flock", counting_flock)
    for thread in _writer_threads(engine, 8, 25, 1000):
        thread.join()
    writes = 8 * 25
    # Handed on when someone waited, but never more than _HANDOVERS times in a row.
    assert writes / (engines._HANDOVERS + 1) <= len(taken) < writes
    queue = engines._WRITER_QUEUES[engine.url.database]
    assert not queue._file_locked  # the last writer let it go
    with engines.read_connection(engine) as connection:
        assert connection.execute(sqlalchemy.text("SELECT count(*) FROM things")).scalar() == writes


CHILD_WRITER = """
import sys, time
from syncserver.db import direct, engines
sys.path.insert(0, sys.argv[2])
from test_db_fast_paths import INSERT
engine = engines.create_engine(sys.argv[1])
started = time.monotonic()
for number in range(20):
    with engines.write_transaction(engine) as connection:
        direct.execute(connection, INSERT, {"id": 90000 + number, "name": "child"})
print(time.monotonic() - started)
"""


def test_another_process_gets_its_turns_while_a_processs_threads_hand_over(engine):
    stop = threading.Event()
    threads = _writer_threads(engine, 8, 100_000, 1000, stop)
    try:
        child = subprocess.run(
            [sys.executable, "-c", CHILD_WRITER, str(engine.url), os.path.dirname(__file__)],
            capture_output=True, text=True, timeout=60)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert child.returncode == 0, child.stderr
    # Twenty writes, each waiting for at most a few of the threads' writes.
    assert float(child.stdout) < 10
    with engines.read_connection(engine) as connection:
        assert connection.execute(sqlalchemy.text(
            "SELECT count(*) FROM things WHERE name = 'child'")).scalar() == 20


def test_a_forked_process_queues_on_its_own_lock_file_description(engine):
    """flock() locks belong to open file descriptions, which a fork shares: the child reopens."""
    queue = engines._WRITER_QUEUES[engine.url.database]
    with queue:
        pass  # the file is open in the parent now
    go_read, go_write = os.pipe()
    answer_read, answer_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: once the parent holds the queue, take it too
        try:
            os.read(go_read, 1)
            started = time.monotonic()
            with queue:
                waited = time.monotonic() - started
            os.write(answer_write, f"{waited:.3f}".encode())
        finally:
            os._exit(0)
    try:
        with queue:
            os.write(go_write, b"!")
            time.sleep(0.5)
        waited = float(os.read(answer_read, 20))
    finally:
        os.waitpid(pid, 0)
        for fd in (go_read, go_write, answer_read, answer_write):
            os.close(fd)
    assert waited >= 0.3  # it waited for the parent's turn


def _take_turn_in_thread(queue, order, name):
    def run():
        with queue:
            order.append(name)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _starving_waiter(queue, order, name):
    """A thread that waits for the queue (held by the caller) until it counts as starving."""
    waiter = _take_turn_in_thread(queue, order, name)
    time.sleep(engines._STARVING_SECONDS * 3)
    assert queue._starving == 1
    return waiter


def test_a_thread_waiting_long_for_its_write_turn_goes_before_newcomers(engine):
    """Waiting threads retry between short sleeps; one that waited long keeps newcomers out."""
    queue = engines._WRITER_QUEUES[engine.url.database]
    order = []
    with queue:
        first = _starving_waiter(queue, order, "waited long")
        newcomer = _take_turn_in_thread(queue, order, "newcomer")
        time.sleep(0.02)
    first.join(5)
    newcomer.join(5)
    assert order == ["waited long", "newcomer"]
    assert (queue._waiting, queue._starving) == (0, 0)


def test_a_turn_nested_in_a_writers_thread_does_not_wait_behind_starving_ones(engine):
    queue = engines._WRITER_QUEUES[engine.url.database]
    order = []
    with queue:
        waiter = _starving_waiter(queue, order, "waiter")
        started = time.monotonic()
        with queue:  # the same thread's: at once
            order.append("nested")
        assert time.monotonic() - started < 0.05
        assert queue._owner == threading.get_ident()
    waiter.join(5)
    assert order == ["nested", "waiter"]
    assert queue._owner is None


def test_writers_checkpoint_the_wal_after_leaving_the_queue(engine, monkeypatch, tmp_path):
    """Not inside a commit (SQLite's own checkpoint is a backstop, at 4,000 pages)."""
    monkeypatch.setattr(engines, "_CHECKPOINT_COMMITS", 5)
    path = tmp_path / "fast.db"
    queue = engines._WRITER_QUEUES[engine.url.database]
    checkpoints = []
    real_checkpoint = engines._checkpoint

    def watched_checkpoint(engine_, queue_):
        checkpoints.append(queue._owner)  # nobody holds the queue meanwhile
        real_checkpoint(engine_, queue_)

    monkeypatch.setattr(engines, "_checkpoint", watched_checkpoint)
    with engines.read_connection(engine) as connection:
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 4000
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").all()

    def rows_in_the_database_file():
        """What a reader ignoring the WAL sees: only what was checkpointed."""
        reader = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
        try:
            return reader.execute("SELECT count(*) FROM things").fetchone()[0]
        finally:
            reader.close()

    seen = []
    for number in range(10):
        with engines.write_transaction(engine) as connection:
            direct.execute(connection, INSERT, {"id": 1000 + number, "name": "x"})
        seen.append(rows_in_the_database_file())
    assert seen == [0, 0, 0, 0, 5, 5, 5, 5, 5, 10]
    assert checkpoints == [None, None]


def test_one_waiting_thread_at_a_time_tries_for_the_write_turn(engine, monkeypatch):
    """Each try takes the interpreter from the writer: the other waiting threads stay blocked."""
    queue = engines._WRITER_QUEUES[engine.url.database]
    real_lock = queue._thread_lock
    tries = []

    class CountingLock:
        def acquire(self, blocking=True, timeout=-1):
            if not blocking:
                tries.append(threading.get_ident())
            return real_lock.acquire(blocking, timeout)

        def release(self):
            real_lock.release()

    monkeypatch.setattr(queue, "_thread_lock", CountingLock())
    order = []
    with queue:
        tries.clear()
        waiters = [_take_turn_in_thread(queue, order, number) for number in range(4)]
        time.sleep(0.03)  # several tries' worth of pauses, all while the queue is held
        # Each thread's first try is on arrival; the ones after are waiting threads' tries.
        trying = {ident for ident in tries if tries.count(ident) > 1}
    for waiter in waiters:
        waiter.join(5)
    assert len(trying) == 1
    assert sorted(order) == [0, 1, 2, 3]
    assert not queue._trying.locked()
