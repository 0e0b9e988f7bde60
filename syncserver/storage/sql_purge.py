"""Purging the SQL storage backend: expired items, expired batches, old tombstones; space.

Mixed into :class:`syncserver.storage.sql.SQLStorage`. Everything here
runs in short transactions that first lock the users concerned in
ascending order (writers lock one user, so the two never deadlock), so
that ``syncserver-admin purge-expired`` can run from cron while the server
serves, and a purge never interleaves with a user's write, batch append or
commit. One exception: on MySQL/MariaDB and PostgreSQL a transaction of one
account's rows locks the user last and never waits while holding rows (see
:meth:`SQLPurge._purge_one_account`), so that account's writers do not wait
for each transaction of a purge of its history.
"""

import logging
import time

from sqlalchemy import exc

from syncserver.db.errors import is_deadlock, is_unavailable
from syncserver.storage import DELETED_USER_RETENTION_SECONDS, StorageUnavailable
from syncserver.storage import sql_schema as schema

logger = logging.getLogger(__name__)

#: How long one purge transaction should hold its users' locks (seconds) while
#: writers are about.
PURGE_TRANSACTION_SECONDS = 0.01
#: SQLite: every writer of the file, whichever its user, waits for the whole
#: transaction, so it stays shorter.
SQLITE_PURGE_TRANSACTION_SECONDS = 0.005
#: ... and once nobody has waited for a while (MySQL/PostgreSQL only): longer
#: transactions mean fewer commits per row. A wait, ours for the locks or a writer's
#: for ours, brings them back to PURGE_TRANSACTION_SECONDS.
PURGE_IDLE_TRANSACTION_SECONDS = 0.04
#: How long no wait must have been seen before transactions grow.
_QUIET_SECONDS = 2.0
#: A lock obtained within this many seconds was not waited for.
_UNCONTENDED_SECONDS = 0.002
#: Whether some transaction waits for a lock right now (asked before each commit).
_LOCK_WAITERS = {
    "postgresql": "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted)",
    # Needs the PROCESS privilege; without it the purge keeps its short transactions.
    "mysql": "SELECT EXISTS (SELECT 1 FROM information_schema.INNODB_LOCK_WAITS)",
}
#: SQLite: after each transaction the purge steps aside for this share of the time it
#: held the write lock, so that writers queued meanwhile get it before the next one.
_SQLITE_YIELD_SHARE = 0.15
#: MySQL/MariaDB and PostgreSQL: the same, for the database server's own work (see
#: _purge_items).
_SERVER_YIELD_SHARE = 0.5
#: MySQL/MariaDB and PostgreSQL, a transaction of one user only (one account's expired
#: history): it steps aside this share of its time. Measured on MariaDB, 500,000 expired
#: rows of one account of 10^6, the default 128 MiB buffer pool, the user's lock taken
#: last (:meth:`SQLPurge._purge_one_account`): with 0.5 every client's p99 was x1.8-1.96
#: of its baseline at 12,160 rows/s, with 1.5 x1.2-1.9 at 7,983 rows/s. On a day of a
#: slower disk 1.5 took 154-155 s (3,221-3,254 rows/s) and 0.75 85-87 s, the writes'
#: p99 during the purge 20-21 ms with either (PostgreSQL: 106 s against 60 s, its p99
#: lower with 0.75): hence 0.75. Spread over many users it would cost the purge most of
#: its rate (MariaDB: 1,795 against 4,950 rows/s) for nothing. Behind the user's lock
#: (MySQL without SKIP LOCKED) such transactions also stay at PURGE_TRANSACTION_SECONDS:
#: the account's writers wait for each of them.
_ONE_USER_YIELD_SHARE = 0.75
#: One account's purge (:meth:`SQLPurge._purge_one_account`): how long
#: it tries for the user's lock, held by a writer, before it gives its deletes up,
#: and the pause between tries.
_USER_LOCK_PATIENCE = 0.03
_USER_LOCK_RETRY_SECONDS = 0.001
#: Bounds of the rows deleted per purge transaction (it starts at the lower one).
_PURGE_ROWS_MIN, _PURGE_ROWS_MAX = 50, 5000
#: Free pages a SQLite file gives back per short write transaction (4 KiB pages: 8 MiB).
_VACUUM_STEP_PAGES = 2048


class _UserLockBusy(Exception):
    """A writer kept the user's lock through the purge's patience: the deletes roll back."""


class SQLPurge:
    """purge_expired and reclaim_space of :class:`~syncserver.storage.sql.SQLStorage`."""

    def _init_purge(self):
        #: Rows per purge transaction (adapted), and where the last purge stopped.
        self._purge_rows = _PURGE_ROWS_MIN
        self._purge_floor = None
        #: Since when (monotonic) no purge transaction has seen a lock wait; None: it just did.
        self._purge_quiet_since = None

    def purge_expired(self, now_seconds, batch_size=1000):
        """Expired items first; with room left in ``batch_size``, expired batches, then tombstones.

        Items: see :meth:`_purge_items`. Batches whose expiry has passed go
        with their staged rows, a batch of them per transaction; tombstones
        of users deleted more than ``DELETED_USER_RETENTION_SECONDS`` before
        ``now_seconds`` go in one statement.
        """
        now_seconds = int(now_seconds)
        purged, examined = self._purge_items(now_seconds, batch_size)
        room = int(batch_size) - examined
        if room > 0:
            batches = self._purge_batches(now_seconds, room)
            purged += batches
            room -= batches
        if room > 0:
            purged += self._purge_tombstones(now_seconds, room)
        return purged

    def _purge_batches(self, now_seconds, limit):
        with self._reading() as connection:
            rows = connection.execute(schema.EXPIRED_BATCHES, {
                "cutoff": now_seconds * 100, "batch_size": limit}).all()
        if not rows:
            return 0
        ids = [batch_id for batch_id, _ in rows]
        with self.database.writing(StorageUnavailable) as connection:
            if self.database.dialect != "sqlite":
                connection.execute(schema.LOCK_USERS, {
                    "userids": sorted({user_id for _, user_id in rows})}).all()
            connection.execute(schema.PURGE_STAGED, {"ids": ids})
            return connection.execute(schema.PURGE_BATCHES, {
                "ids": ids, "cutoff": now_seconds * 100}).rowcount

    def _purge_tombstones(self, now_seconds, limit):
        cutoff = now_seconds - DELETED_USER_RETENTION_SECONDS
        with self._reading() as connection:
            user_ids = connection.execute(schema.OLD_TOMBSTONES, {
                "cutoff": cutoff, "batch_size": limit}).scalars().all()
        if not user_ids:
            return 0
        with self.database.writing(StorageUnavailable) as connection:
            return connection.execute(schema.PURGE_TOMBSTONES, {
                "userids": list(user_ids), "cutoff": cutoff}).rowcount

    def _purge_items(self, now_seconds, batch_size):
        """Up to ``batch_size`` expired items; returns (items purged, expired keys read).

        Reads a batch of expired keys in expiry order, then delete them in short transactions.

        The keys are grouped by user and collection, and each transaction
        deletes its share by primary key with one statement (two on MySQL;
        SQLite, and MySQL without JSON_TABLE: statements per user and
        collection). Each transaction first locks its users' rows in
        ascending order (writers lock one user, so the two never deadlock;
        on MySQL and PostgreSQL a transaction of one user locks it last,
        :meth:`_purge_one_account`) and takes about
        :data:`PURGE_TRANSACTION_SECONDS`: the number of rows per
        transaction adapts to how fast the database deletes them. A row
        rewritten in between (no longer expired) is left alone. Successive
        calls with the same ``now_seconds`` start where the previous stopped
        in the expiry index.
        """
        floor = self._purge_floor[1] if (self._purge_floor is not None
                                         and self._purge_floor[0] == now_seconds) else 0
        with self._reading() as connection:
            keys = connection.execute(schema.EXPIRED_KEYS, {
                "now_seconds": now_seconds, "floor_ttl": floor,
                "batch_size": int(batch_size)}).all()
        if not keys:
            self._purge_floor = None
            return 0, 0
        by_owner = {}
        for _ttl, user_id, collection_id, item_id in keys:
            by_owner.setdefault((user_id, collection_id), []).append(item_id)
        # In key order: a transaction's deletes then walk the primary key forwards.
        pieces = [(user_id, collection_id, ids[start:start + _PURGE_ROWS_MAX])
                  for (user_id, collection_id), ids in sorted(
                      (owner, sorted(ids)) for owner, ids in by_owner.items())
                  for start in range(0, len(ids), _PURGE_ROWS_MAX)]
        purged = 0
        while pieces:
            transaction, rows = [], 0
            while pieces and rows < self._purge_rows:
                user_id, collection_id, ids = pieces.pop(0)
                room = self._purge_rows - rows
                if len(ids) > room:
                    pieces.insert(0, (user_id, collection_id, ids[room:]))
                    ids = ids[:room]
                transaction.append((user_id, collection_id, ids))
                rows += len(ids)
            one_user = (self.database.dialect != "sqlite"
                        and len({user_id for user_id, _, _ in transaction}) == 1)
            outcome = None
            if one_user and self._locks_user_last():
                outcome = self._purge_one_account(transaction, now_seconds)
            if outcome is None:
                count, held = self._purge_transaction(transaction, now_seconds)
            else:
                count, held = outcome
            purged += count
            # Behind the user's lock (older servers, or a writer kept the lock), that
            # user's writers wait for the whole transaction: it stays short.
            self._adapt_purge_rows(rows, held, may_grow=not one_user or outcome is not None)
            if self.database.dialect == "sqlite":
                self._sqlite_after_purge_transaction(held)
            else:
                # The database server deletes at its own priority (``purge-expired
                # --nice`` only lowers ours), and InnoDB's purge of deleted rows and
                # its log flushes, PostgreSQL's WAL writes, share the CPUs and disk
                # with the server's queries: leave them some room.
                time.sleep(held * (_ONE_USER_YIELD_SHARE if one_user else _SERVER_YIELD_SHARE))
        self._purge_floor = (now_seconds, keys[-1][0])
        return purged, len(keys)

    def _purge_transaction(self, pieces, now_seconds):
        """Delete ``(user, collection, ids)`` pieces in one transaction; subtract their bytes.

        Only rows still expired go (one rewritten meanwhile stays), and each
        user's usage loses exactly the bytes deleted of theirs.

        Returns how many rows went and how long the transaction held its
        locks, commit included (from when it had them: waiting for them says
        nothing of the rate).
        """
        for attempt in self.database.attempts(StorageUnavailable, what="purge transaction"):
            asked = time.monotonic()
            with attempt, self.database.writing(StorageUnavailable) as connection:
                if self.database.dialect != "sqlite":  # SQLite: the transaction is the lock
                    # A user without a row was deleted meanwhile (with these items)
                    # or loaded without one: no writer holds it, the items can go.
                    connection.execute(schema.LOCK_USERS, {
                        "userids": sorted({user_id for user_id, _, _ in pieces})}).all()
                started = time.monotonic()
                waited = started - asked > _UNCONTENDED_SECONDS
                at_once = self._purges_keys_at_once(pieces)
                if at_once:
                    purged, freed = self._delete_keys_at_once(connection, pieces, now_seconds)
                else:
                    purged, freed = self._delete_pieces(connection, pieces, now_seconds)
                if freed and at_once and len(freed) > 1:
                    connection.execute(*schema.subtract_usages(self.database.dialect, freed))
                elif freed:
                    connection.execute(schema.SUBTRACT_USAGE, [
                        {"k_userid": user_id, "v_bytes": size} for user_id, size in freed.items()])
                waited = waited or self._writers_waiting(connection)
        # The locks are held until the commit is done (MySQL's flushes its log to disk).
        held = time.monotonic() - started
        self._note_contention(waited)
        return purged, held

    def _purge_one_account(self, pieces, now_seconds):
        """One user's ``pieces`` deleted with that user's lock taken last, for a moment.

        Each piece's expired rows that no writer holds are locked (SKIP
        LOCKED) and deleted; then the user's row is locked, without waiting,
        to subtract the bytes. While a writer has it, the purge tries again
        every millisecond, for up to :data:`_USER_LOCK_PATIENCE` seconds,
        then rolls its deletes back and returns None (the caller deletes
        the same rows the classic way, behind the user's lock). The purge
        thus never waits for a lock while holding rows, so it does not
        deadlock with a writer (who takes the user's lock first; should
        MariaDB wait on that SKIP LOCKED after all, as it was seen to, the
        deadlock's loser runs again, the purge the classic way), and the
        account's writers wait only to write a row the purge holds, not for
        every transaction as they would behind the user's lock (measured on
        MariaDB: their p99 x3.6-4.6 of baseline, now x1.6-1.9).

        A row a writer holds is left alone: it is being rewritten or
        deleted (or, should that write fail, the next purge run takes it).

        Returns what :meth:`_purge_transaction` does, or None.
        """
        user_id = pieces[0][0]
        started = time.monotonic()
        waited = False
        try:
            with self.database.writing(StorageUnavailable) as connection:
                locked, freed = [], 0
                for _, collection_id, ids in pieces:
                    rows = connection.execute(schema.LOCK_PURGEABLE_SKIPPING, {
                        "userid": user_id, "collection": collection_id, "ids": ids,
                        "now_seconds": now_seconds}).all()
                    if len(rows) < len(ids):
                        waited = True  # rewritten, or held by a writer
                    if rows:
                        locked.append((user_id, collection_id, [item_id for item_id, _ in rows]))
                        freed += sum(size for _, size in rows)
                purged = self._delete_locked(connection, locked, now_seconds) if locked else 0
                if freed:
                    waited = self._lock_user_briefly(connection, user_id) or waited
                    connection.execute(schema.SUBTRACT_USAGE,
                                       {"k_userid": user_id, "v_bytes": freed})
        except _UserLockBusy:
            self._note_contention(True)
            return None
        except StorageUnavailable as error:
            # MariaDB has been seen to wait on the user's SKIP LOCKED now and then;
            # should that close a cycle with the account's writer, this is the
            # transaction it rolled back: the rows go the classic way.
            if not is_deadlock(error.__cause__):
                raise
            logger.info("purge of user %s's rows deadlocked; done behind the user's lock",
                        user_id)
            self._note_contention(True)
            return None
        held = time.monotonic() - started
        self._note_contention(waited)
        return purged, held

    def _note_contention(self, waited):
        """Remember since when no purge transaction waited or was waited for (_adapt_purge_rows)."""
        if waited:
            self._purge_quiet_since = None
        elif self._purge_quiet_since is None:
            self._purge_quiet_since = time.monotonic()

    def _delete_locked(self, connection, pieces, now_seconds):
        """Delete exactly the rows of ``pieces``, all locked by us; returns how many went.

        MySQL: by primary-key lookups (JSON_TABLE, eq_ref): an id list may
        be read as a range of the user's keys, waiting for a row a writer
        holds. PostgreSQL's DELETE locks only the rows it deletes.
        """
        params = schema.purge_keys_params(self.database.dialect, pieces, now_seconds)
        if self.database.dialect == "postgresql":
            return sum(count for _, count, _ in connection.execute(
                schema.PURGE_KEYS_BY_USER, params).all())
        return connection.execute(schema.PURGE_KEYS, params).rowcount

    def _lock_user_briefly(self, connection, user_id):
        """Lock the user's row without ever waiting on it; True if it was busy at first.

        A user without a row (deleted meanwhile, or loaded without one) has
        no usage to subtract and no writer: nothing to lock. Raises
        :class:`_UserLockBusy` after :data:`_USER_LOCK_PATIENCE` seconds of tries.
        """
        deadline = time.monotonic() + _USER_LOCK_PATIENCE
        busy = False
        while connection.execute(schema.LOCK_USER_SKIPPING, {"userid": user_id}).first() is None:
            if connection.execute(schema.USER_ROW, {"userid": user_id}).first() is None:
                return busy
            if time.monotonic() >= deadline:
                raise _UserLockBusy(user_id)
            busy = True
            time.sleep(_USER_LOCK_RETRY_SECONDS)
        return busy

    def _locks_user_last(self):
        """True where :meth:`_purge_one_account` can run: PostgreSQL, MariaDB 10.6, MySQL 8.0.4.

        It needs ``SKIP LOCKED`` and, on MySQL, JSON_TABLE (:meth:`_delete_locked`).
        """
        return self._engine.dialect.name == "postgresql" or self._has_json_table()

    def _has_json_table(self):
        """True on MariaDB 10.6+ and MySQL 8.0.4+. Asked at each use: the dialect
        knows the server's version only once it has connected."""
        dialect = self._engine.dialect
        if dialect.name not in ("mysql", "mariadb"):
            return False
        since = schema.JSON_TABLE_SINCE["mariadb" if dialect.is_mariadb else "mysql"]
        return (dialect.server_version_info or ()) >= since

    def _purges_keys_at_once(self, pieces):
        """True when one statement takes a whole transaction's keys (PostgreSQL, JSON_TABLE).

        On MySQL not for a transaction of one piece (one large account's
        history): its id list is a range of the primary key, and measured
        with 500,000 expired rows of one user, the join from JSON_TABLE held
        that user's lock long enough to take its writers' p99 from x1.75 to
        x4.9 of their baseline.
        """
        if self._engine.dialect.name == "postgresql":
            return True
        return len(pieces) > 1 and self._has_json_table()

    def _delete_keys_at_once(self, connection, pieces, now_seconds):
        """Delete all of ``pieces``; returns (rows deleted, bytes freed per user).

        PostgreSQL: one statement. MySQL: the bytes per user, then the
        DELETE; the users' locks keep the rows as they were read.
        """
        dialect = self.database.dialect
        params = schema.purge_keys_params(dialect, pieces, now_seconds)
        if dialect == "postgresql":
            rows = connection.execute(schema.PURGE_KEYS_BY_USER, params).all()
            return sum(count for _, count, _ in rows), {
                user_id: int(size) for user_id, _, size in rows if size}
        rows = connection.execute(schema.PURGEABLE_KEYS_USAGE, params).all()
        if not rows:
            return 0, {}
        purged = connection.execute(schema.PURGE_KEYS, params).rowcount
        return purged, {user_id: int(size) for user_id, _, size in rows if size}

    def _delete_pieces(self, connection, pieces, now_seconds):
        """:meth:`_delete_keys_at_once` with statements per piece (SQLite, older MySQL)."""
        freed = {}
        purged = 0
        for user_id, collection_id, ids in pieces:
            params = {"userid": user_id, "collection": collection_id, "ids": ids,
                      "now_seconds": now_seconds}
            if self._delete_returns():
                sizes = connection.execute(
                    schema.PURGE_ITEMS_RETURNING_SIZES, params).scalars().all()
                count, size = len(sizes), sum(sizes)
            else:
                count, size = connection.execute(schema.PURGEABLE_USAGE, params).one()
                if count:
                    count = connection.execute(schema.PURGE_ITEMS, params).rowcount
            purged += count
            if size:
                freed[user_id] = freed.get(user_id, 0) + int(size)
        return purged, freed

    def _writers_waiting(self, connection):
        """True when a transaction waits for a lock now (maybe ours); SQLite: not asked."""
        dialect = self.database.dialect
        query = _LOCK_WAITERS.get("mysql" if dialect == "mariadb" else dialect)
        if query is None:
            return False
        if dialect == "postgresql":
            return bool(connection.exec_driver_sql(query).scalar())
        try:
            # An error here (no PROCESS privilege) does not end a MySQL transaction.
            return bool(connection.exec_driver_sql(query).scalar())
        except exc.DBAPIError as error:
            if is_unavailable(error):
                raise
            return True

    def _sqlite_after_purge_transaction(self, held):
        """Copy what the purge wrote into the file, then let waiting writers go first.

        A purge fills the WAL fast; left alone, the server's next write past
        the auto-checkpoint threshold would copy it back (with an fsync)
        while its client waits. A PASSIVE checkpoint here does that work in
        the purge's process, without the write lock, beside the writers.
        Then the purge steps aside: writers of the server wait on the same
        file lock, and releasing it and taking it again at once would let
        the purge win every time.
        """
        with self._reading() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").all()
        time.sleep(held * _SQLITE_YIELD_SHARE)

    def _adapt_purge_rows(self, rows, seconds, may_grow=True):
        """Aim the next purge transaction at PURGE_TRANSACTION_SECONDS, longer when uncontended.

        ``may_grow``: False keeps it at PURGE_TRANSACTION_SECONDS however quiet.
        """
        sqlite = self.database.dialect == "sqlite"
        # SQLite: every writer of the file waits for the whole transaction.
        budget = SQLITE_PURGE_TRANSACTION_SECONDS if sqlite else PURGE_TRANSACTION_SECONDS
        if rows < self._purge_rows and seconds < budget:
            return  # a short tail says nothing about the rate
        rate = rows / max(seconds, 1e-4)
        if (not sqlite and may_grow and self._purge_quiet_since is not None
                and time.monotonic() - self._purge_quiet_since >= _QUIET_SECONDS):
            budget = PURGE_IDLE_TRANSACTION_SECONDS
        target = int(rate * budget)
        self._purge_rows = max(_PURGE_ROWS_MIN, min(_PURGE_ROWS_MAX, target,
                                                    self._purge_rows * 2))

    def reclaim_space(self, full=False):
        """SQLite: give free pages back to the file system; other databases reuse them.

        A SQLite file never shrinks by itself. Files created with
        ``auto_vacuum=INCREMENTAL`` (every file this version creates) give
        their free pages back by ``PRAGMA incremental_vacuum`` in steps of
        :data:`_VACUUM_STEP_PAGES` pages, each its own short write transaction,
        then the WAL is checkpointed and emptied. An older file (``auto_vacuum=NONE``)
        can only be switched by a full ``VACUUM``, which rewrites it whole and
        holds the write lock meanwhile: only with ``full``; without it, None.
        """
        if self.database.dialect != "sqlite":
            return None
        with self._reading() as connection:
            mode = connection.exec_driver_sql("PRAGMA auto_vacuum").scalar()
            page_size = connection.exec_driver_sql("PRAGMA page_size").scalar()
            pages_before = connection.exec_driver_sql("PRAGMA page_count").scalar()
        if mode == 0 and not full:
            return None
        with self.database.translating(StorageUnavailable):
            if mode == 0:
                with self.database.writing(StorageUnavailable) as connection:
                    connection.exec_driver_sql("PRAGMA auto_vacuum=INCREMENTAL")
                with self.database.reading(StorageUnavailable) as connection:
                    # VACUUM cannot run inside a transaction; a read connection has none.
                    connection.exec_driver_sql("VACUUM")
            else:
                while True:
                    with self.database.writing(StorageUnavailable) as connection:
                        free = connection.exec_driver_sql("PRAGMA freelist_count").scalar()
                        if not free:
                            break
                        connection.exec_driver_sql(
                            f"PRAGMA incremental_vacuum({_VACUUM_STEP_PAGES})")
            with self._reading() as connection:
                # The pages given back are in the WAL until a checkpoint; TRUNCATE
                # also empties the WAL file, which else keeps its largest size.
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").all()
                pages_after = connection.exec_driver_sql("PRAGMA page_count").scalar()
        return max(0, pages_before - pages_after) * page_size

    # -- administration -----------------------------------------------------

