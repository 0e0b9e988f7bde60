"""The bundled SQL store of Sync 1.5 users (SQLite, MySQL/MariaDB, PostgreSQL).

Two tables on :data:`metadata`, in ``tokenserver.sqluri`` (the database of
the node list, whose ``nodes`` rows they point to)::

    token_users     uid              BIGINT primary key, autoincrement (the Sync uid)
                    email            VARCHAR(255)  "<fxa uid>@api.accounts.firefox.com"
                    fxa_uid          VARCHAR(64)
                    generation       BIGINT        (ms; 2**63-1 = retired)
                    client_state     VARCHAR(32)   (hex; may be "")
                    keys_changed_at  BIGINT NULL   (ms)
                    created_at       BIGINT        (ms)
                    replaced_at      BIGINT NULL   (ms; set: the uid is dead)
                    node_id          INTEGER NULL -> nodes.id ON DELETE SET NULL
                    purged_at        BIGINT NULL   (ms; the replaced uid's storage is deleted)
                    indexes (email, created_at), (replaced_at), (node_id),
                            (purged_at, replaced_at)

    token_accounts  email            VARCHAR(255) primary key
                    blocked          BOOLEAN       (an administrator refused the account)
                    created_at       BIGINT        (ms)

``token_users`` is Mozilla's ``users`` table (reference §1.5) without the
``service`` column (this server serves one service) and with the FxA uid in
a column of its own. ``token_accounts`` has one row per account that ever
asked for a token through a write: it is what a request **locks** (``SELECT
... FOR UPDATE`` on MySQL and PostgreSQL), so two racing first requests
cannot both create the account, and every change to an account happens
under one lock. It also keeps the administrator's block, which must work
before the account's first token. On SQLite, writers are serialised by
:meth:`syncserver.db.Database.writing` instead. Creating the lock row is an
insert that ignores a duplicate, so it never aborts the transaction.

Each token request first reads, without a lock: when the rules refuse it,
or when nothing needs writing (the usual case: same keys, same node), it
is answered from that read. Otherwise the request runs again in one write
transaction: lock the account, read its rows, apply the policy and the
algorithm of :func:`~syncserver.tokenserver.users.plan_request`, write.

**Nodes** are the existing node list (``nodes``, shared with the Sync 1.1
node assignment of :mod:`syncserver.nodes.sql`), read here through a
lightweight table clause because backend families do not import each
other. A new row that needs a node takes the least loaded one that is
available, not downed, without backoff and below capacity (ties: the lower
load, then the older node), locking the candidate rows in id order, and
counts the account in its ``current_load``; moving an account off a node
uncounts it there. With no node in the list at all, this server is the
node: rows get ``node_id`` NULL and the caller uses its own URL. Mozilla's
``available`` slot counter and its release rate do not apply here:
``available`` is the operator's on/off switch of our node list.

Lock order, everywhere: the account's row, the cap's row (only with
``tokenserver.max_users``), then node rows in id order. A deadlock or lock
timeout reported anyway is retried.
"""

import contextlib
import fractions
import logging
import time

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    case,
    column,
    func,
    or_,
    select,
    table,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite

from syncserver.db import Database
from syncserver.db.backed import DatabaseBacked
from syncserver.errors import ConfigError
from syncserver.tokenserver import errors
from syncserver.tokenserver.errors import AccessRefused
from syncserver.tokenserver.users import (
    MAX_ROWS,
    AccountSummary,
    NoSuchTokenUser,
    ReplacedUid,
    TokenUser,
    TokenUserBackend,
    TokenUsersUnavailable,
    UserRow,
    account_email,
    new_account_row,
    plan_request,
)

logger = logging.getLogger(__name__)

metadata = MetaData()

MYSQL_TABLE = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4",
               "mysql_collate": "utf8mb4_bin"}

token_users = Table(
    "token_users", metadata,
    Column("uid", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
           autoincrement=True),
    Column("email", String(255), nullable=False),
    Column("fxa_uid", String(64), nullable=False),
    Column("generation", BigInteger(), nullable=False),
    Column("client_state", String(32), nullable=False),
    Column("keys_changed_at", BigInteger(), nullable=True),
    Column("created_at", BigInteger(), nullable=False),
    Column("replaced_at", BigInteger(), nullable=True),
    Column("node_id", Integer(), ForeignKey("nodes.id", ondelete="SET NULL"), nullable=True),
    Column("purged_at", BigInteger(), nullable=True),
    Index("token_users_lookup_idx", "email", "created_at"),
    Index("token_users_replaced_at_idx", "replaced_at"),
    Index("token_users_node_idx", "node_id"),
    Index("token_users_purge_idx", "purged_at", "replaced_at"),
    sqlite_autoincrement=True,
    **MYSQL_TABLE,
)

token_accounts = Table(
    "token_accounts", metadata,
    Column("email", String(255), primary_key=True),
    Column("blocked", Boolean(), nullable=False),
    Column("created_at", BigInteger(), nullable=False),
    **MYSQL_TABLE,
)

#: The node list of :mod:`syncserver.nodes.sql`, as far as the tokenserver reads it.
nodes = table(
    "nodes",
    column("id", Integer()), column("url", String()), column("capacity", Integer()),
    column("current_load", Integer()), column("available", Boolean()),
    column("downed", Boolean()), column("backoff", Integer()),
)

#: The ``token_accounts`` row locked while counting accounts for ``tokenserver.max_users``
#: (no account's e-mail is empty).
CAP_LOCK = ""

_WRITE_ATTEMPTS = 5

_ROW_COLUMNS = (token_users.c.uid, token_users.c.generation, token_users.c.client_state,
                token_users.c.keys_changed_at, token_users.c.created_at,
                token_users.c.replaced_at, token_users.c.node_id, token_users.c.purged_at,
                nodes.c.id.label("found_node_id"), nodes.c.url.label("node_url"),
                nodes.c.downed.label("node_downed"))
_ROWS = (select(*_ROW_COLUMNS)
         .select_from(token_users.outerjoin(nodes, nodes.c.id == token_users.c.node_id)))
# The statements of every token request, built once with bind parameters: building
# them per request (and SQLAlchemy's cache key of a new statement) cost more than
# running them.
# Each row also says whether the node list has any node (needed to tell a row without
# node "this server" from "its node was removed"), which spares a third statement.
_BLOCKED = select(token_accounts.c.blocked).where(token_accounts.c.email == bindparam("email"))
_ACCOUNT_ROWS = _ROWS.add_columns(select(nodes.c.id).exists().label("any_node")).where(
    token_users.c.email == bindparam("email")).order_by(
    token_users.c.created_at.desc(), token_users.c.uid.desc())
_RECENT_ACCOUNT_ROWS = _ACCOUNT_ROWS.limit(MAX_ROWS)
# A known account's token request in one statement: its rows also say whether it is
# blocked (an account without rows, blocked before its first sign-in, asks _BLOCKED).
_RECENT_ROWS_AND_BLOCKED = _RECENT_ACCOUNT_ROWS.add_columns(
    _BLOCKED.scalar_subquery().label("account_blocked"))
_BLOCKED_LOCKED = _BLOCKED.with_for_update()
_ANY_NODE = select(nodes.c.id).limit(1)


class SQLTokenUsers(DatabaseBacked, TokenUserBackend):
    """Sync 1.5 users in SQL; see the module docstring. ``clock`` gives epoch seconds."""

    def __init__(self, database, *, owns_database=False, clock=time.time, self_is_node=True):
        self._use_database(database, owns_database)
        self._clock = clock
        #: False for a tokenserver serving no storage: an empty node list is then a 503.
        self.self_is_node = self_is_node

    @classmethod
    def from_settings(cls, settings):
        """A backend with a database of its own (the server shares one: :meth:`open`)."""
        _require_sqluri(settings)
        return cls(Database(settings.sqluri, key="tokenserver.sqluri",
                            pool_size=settings.pool_size, pool_timeout=settings.pool_timeout,
                            pool_recycle=settings.pool_recycle), owns_database=True)

    @classmethod
    def open(cls, settings, databases, self_is_node=True):
        _require_sqluri(settings)
        return cls(databases.database(settings.sqluri, "tokenserver.sqluri",
                                      settings.create_tables), self_is_node=self_is_node)

    def is_healthy(self):
        return self.database.table_answers(token_users.c.uid)

    # --- token requests -------------------------------------------------------

    def get_user(self, fxa_uid, generation, keys_changed_at, client_state, policy):
        policy.check_account(fxa_uid)
        email = account_email(fxa_uid)
        with self._reading() as connection:
            raw_rows = connection.execute(_RECENT_ROWS_AND_BLOCKED, {"email": email}).all()
            blocked = (bool(raw_rows[0].account_blocked) if raw_rows
                       else _blocked(connection, email))
            if blocked:
                raise AccessRefused("the account is blocked (syncserver-admin token-user block)")
            rows = _user_rows(raw_rows)
            if rows:
                plan = plan_request(rows, generation, keys_changed_at, client_state,
                                    self._now_ms())
                if not plan.writes:
                    return _answer(plan.current)
            else:
                # Checked again under the lock: this read only spares refused requests a write.
                policy.check_new_account(lambda: _count_accounts(connection))
        return self._write(lambda connection: self._get_user_locked(
            connection, fxa_uid, generation, keys_changed_at, client_state, policy))

    def _get_user_locked(self, connection, fxa_uid, generation, keys_changed_at, client_state,
                         policy):
        email = account_email(fxa_uid)
        now_ms = self._now_ms()
        if _lock_account(connection, email, now_ms):
            raise AccessRefused("the account is blocked (syncserver-admin token-user block)")
        rows = _load_rows(connection, email)
        if not rows:  # B: a new account
            if policy.counts_users:
                _lock_account(connection, CAP_LOCK, now_ms)
            policy.check_new_account(lambda: _count_accounts(connection))
            new_row = new_account_row(generation, keys_changed_at, client_state, now_ms)
            return _insert(connection, email, fxa_uid, new_row, leaving=None,
                           self_is_node=self.self_is_node)
        plan = plan_request(rows, generation, keys_changed_at, client_state, now_ms)
        for uid, replaced_at in plan.repairs:  # A: the race repair
            connection.execute(token_users.update()
                               .where(token_users.c.uid == uid, token_users.c.replaced_at.is_(None))
                               .values(replaced_at=replaced_at))
        current = plan.current
        if plan.new_row is not None:
            return _insert(connection, email, fxa_uid, plan.new_row, leaving=current,
                           self_is_node=self.self_is_node)
        if plan.update is not None:
            new_generation, new_k = plan.update
            connection.execute(token_users.update().where(
                token_users.c.uid == current.uid,
                token_users.c.replaced_at.is_(None),
                token_users.c.generation <= new_generation,
                func.coalesce(token_users.c.keys_changed_at, 0)
                <= func.coalesce(new_k, token_users.c.keys_changed_at, 0),
            ).values(generation=new_generation, keys_changed_at=new_k))
            return TokenUser(current.uid, current.node_url, new_generation, new_k,
                             current.client_state)
        return _answer(current)

    # --- administration -------------------------------------------------------

    def list_accounts(self):
        with self._reading() as connection:
            rows = connection.execute(
                select(token_users.c.fxa_uid, *_ROW_COLUMNS)
                .select_from(token_users.outerjoin(nodes, nodes.c.id == token_users.c.node_id))
                .order_by(token_users.c.email, token_users.c.created_at.desc(),
                          token_users.c.uid.desc())).all()
            flags = connection.execute(select(token_accounts.c.email, token_accounts.c.blocked)
                                       .where(token_accounts.c.email != CAP_LOCK)).all()
            nodes_exist = _nodes_exist(connection)
        by_account = {}
        for row in rows:
            by_account.setdefault(row.fxa_uid, []).append(_user_row(row, nodes_exist))
        blocked = {email for email, flag in flags if flag}
        summaries = [_summary(fxa_uid, account_email(fxa_uid) in blocked, user_rows)
                     for fxa_uid, user_rows in by_account.items()]
        known = {account_email(fxa_uid) for fxa_uid in by_account}
        summaries += [_summary(email.rsplit("@", 1)[0], True, []) for email in sorted(blocked)
                      if email not in known]
        return sorted(summaries, key=lambda summary: (summary.uid is None, summary.uid or 0,
                                                      summary.fxa_uid))

    def get_account(self, fxa_uid):
        email = account_email(fxa_uid)
        with self._reading() as connection:
            rows = _load_rows(connection, email, limit=None)
            blocked = _blocked(connection, email)
        if not rows and not blocked:
            return None
        return _summary(fxa_uid, blocked, rows)

    def find_fxa_uid(self, uid):
        with self._reading() as connection:
            return connection.execute(select(token_users.c.fxa_uid)
                                      .where(token_users.c.uid == uid)).scalar_one_or_none()

    def set_blocked(self, fxa_uid, blocked):
        def change(connection):
            email = account_email(fxa_uid)
            _lock_account(connection, email, self._now_ms())
            connection.execute(token_accounts.update().where(token_accounts.c.email == email)
                               .values(blocked=bool(blocked)))

        self._write(change)

    def reassign(self, fxa_uid):
        def replace(connection):
            email = account_email(fxa_uid)
            now_ms = self._now_ms()
            _lock_account(connection, email, now_ms)
            current = _current(_load_rows(connection, email))
            if current is None:
                raise NoSuchTokenUser(f"no Sync 1.5 user has the FxA uid {fxa_uid}")
            connection.execute(token_users.update().where(
                token_users.c.uid == current.uid, token_users.c.replaced_at.is_(None))
                .values(replaced_at=max(now_ms, current.created_at)))
            return current.uid

        return self._write(replace)

    def delete_account(self, fxa_uid):
        def delete(connection):
            email = account_email(fxa_uid)
            blocked = _lock_account(connection, email, self._now_ms())
            rows = _load_rows(connection, email, limit=None)
            if not rows and not blocked:
                raise NoSuchTokenUser(f"no Sync 1.5 user has the FxA uid {fxa_uid}")
            current = _current(rows)
            if current is not None and current.node_state != "gone":
                _uncount(connection, current.node_id)
            connection.execute(token_users.delete().where(token_users.c.email == email))
            connection.execute(token_accounts.delete().where(token_accounts.c.email == email))
            return sorted(row.uid for row in rows)

        return self._write(delete)

    def count_accounts(self):
        with self._reading() as connection:
            return _count_accounts(connection)

    def replaced_uids(self, replaced_before_ms, limit, after_uid=0):
        with self._reading() as connection:
            rows = connection.execute(
                select(token_users.c.uid, token_users.c.fxa_uid, token_users.c.replaced_at,
                       token_users.c.node_id, nodes.c.id.label("found_node_id"),
                       nodes.c.url.label("node_url"))
                .select_from(token_users.outerjoin(nodes, nodes.c.id == token_users.c.node_id))
                .where(token_users.c.purged_at.is_(None),
                       token_users.c.replaced_at.is_not(None),
                       token_users.c.replaced_at <= replaced_before_ms,
                       token_users.c.uid > after_uid)
                .order_by(token_users.c.uid).limit(limit)).all()
        return [ReplacedUid(uid=row.uid, fxa_uid=row.fxa_uid, replaced_at=row.replaced_at,
                            node_url=row.node_url if row.found_node_id is not None else None,
                            node_state=_purge_node_state(row)) for row in rows]

    def mark_purged(self, uids):
        uids = sorted(set(uids))
        if not uids:
            return 0

        def mark(connection):
            # Only replaced rows: a current row is never marked, whatever the caller says.
            return connection.execute(token_users.update().where(
                token_users.c.uid.in_(uids), token_users.c.purged_at.is_(None),
                token_users.c.replaced_at.is_not(None)).values(purged_at=self._now_ms())).rowcount

        return self._write(mark)

    def count_by_node(self):
        with self._reading() as connection:
            rows = connection.execute(
                select(nodes.c.url, func.count())
                .select_from(token_users.outerjoin(nodes, nodes.c.id == token_users.c.node_id))
                .where(token_users.c.replaced_at.is_(None))
                .group_by(nodes.c.url)).all()
        return dict(rows)

    # --- plumbing -------------------------------------------------------------

    def _now_ms(self):
        return int(self._clock() * 1000)

    @contextlib.contextmanager
    def _reading(self):
        with self.database.reading(TokenUsersUnavailable) as connection:
            yield connection

    def _write(self, work):
        """Run ``work(connection)`` in one write transaction; retry deadlocks and lock timeouts."""
        return self.database.write_retrying(work, TokenUsersUnavailable, _WRITE_ATTEMPTS,
                                            "tokenserver write")


def _require_sqluri(settings):
    if not settings.sqluri:
        raise ConfigError("tokenserver.sqluri is required (or nodes.sqluri, auth.sqluri or "
                          "storage.sqluri, which it defaults to).")


def _blocked(connection, email):
    return bool(connection.execute(_BLOCKED, {"email": email}).scalar())


def _lock_account(connection, email, now_ms):
    """Create the account's row if missing (never failing on a duplicate), lock it; its block."""
    dialect = connection.dialect.name
    values = {"email": email, "blocked": False, "created_at": now_ms}
    if dialect == "mysql":
        statement = mysql.insert(token_accounts).values(values).on_duplicate_key_update(
            email=token_accounts.c.email)
    elif dialect == "postgresql":
        statement = postgresql.insert(token_accounts).values(values).on_conflict_do_nothing()
    else:
        statement = sqlite.insert(token_accounts).values(values).on_conflict_do_nothing()
    connection.execute(statement)
    return bool(connection.execute(_BLOCKED_LOCKED, {"email": email}).scalar())


def _load_rows(connection, email, limit=MAX_ROWS):
    """The account's rows, newest first (step A), with their nodes' states."""
    if limit == MAX_ROWS:
        query = _RECENT_ACCOUNT_ROWS
    else:
        query = _ACCOUNT_ROWS if limit is None else _ACCOUNT_ROWS.limit(limit)
    return _user_rows(connection.execute(query, {"email": email}).all())


def _user_rows(raw_rows):
    """:class:`UserRow` of each result row of ``_ACCOUNT_ROWS`` (or a variant)."""
    nodes_exist = any(row.node_id is None for row in raw_rows) and bool(raw_rows[0].any_node)
    return [_user_row(row, nodes_exist) for row in raw_rows]


def _user_row(row, nodes_exist):
    """A :class:`UserRow`; ``nodes_exist`` tells whether a row without node lost it."""
    if row.node_id is None:
        # This server is the node when the node list is empty; otherwise the node is gone.
        state = "gone" if nodes_exist else "ok"
    elif row.found_node_id is None:
        state = "gone"  # removed from the node list (SQLite does not enforce the foreign key)
    elif row.node_downed:
        state = "downed"
    else:
        state = "ok"
    return UserRow(uid=row.uid, generation=row.generation, client_state=row.client_state,
                   keys_changed_at=row.keys_changed_at, created_at=row.created_at,
                   replaced_at=row.replaced_at, node_id=row.node_id,
                   node_url=row.node_url if row.found_node_id is not None else None,
                   node_state=state, purged_at=row.purged_at)


def _purge_node_state(row):
    if row.found_node_id is not None:
        return "listed"
    # No node: written to the server that was the node itself (no node list at the
    # time), or a node removed since (MySQL and PostgreSQL set node_id NULL then).
    return "this server" if row.node_id is None else "gone"


def _nodes_exist(connection):
    return connection.execute(_ANY_NODE).first() is not None


def _count_accounts(connection):
    return connection.execute(select(func.count(func.distinct(token_users.c.email)))).scalar()


def _current(rows):
    if not rows:
        return None
    return max(rows, key=lambda row: (row.generation, row.created_at, row.uid))


def _answer(row):
    return TokenUser(row.uid, row.node_url, row.generation, row.keys_changed_at or None,
                     row.client_state)


def _insert(connection, email, fxa_uid, new_row, leaving, self_is_node=True):
    """Insert ``new_row`` (a new uid), choosing its node if asked; mark older rows replaced.

    ``leaving`` is the current row the account moves from (None for a new
    account); when the account changes node, that node stops counting it.
    """
    node_id, node_url = new_row.node_id, new_row.node_url
    if new_row.allocate:
        leaving_node = leaving.node_id if leaving is not None and \
            leaving.node_state != "gone" else None
        node_id, node_url = _allocate_node(connection, leaving_node, self_is_node)
    uid = connection.execute(token_users.insert().values(
        email=email, fxa_uid=fxa_uid, generation=new_row.generation,
        client_state=new_row.client_state, keys_changed_at=new_row.keys_changed_at,
        created_at=new_row.created_at, replaced_at=None, node_id=node_id,
    )).inserted_primary_key[0]
    if leaving is not None:
        connection.execute(token_users.update().where(
            token_users.c.email == email, token_users.c.replaced_at.is_(None),
            token_users.c.uid != uid).values(replaced_at=new_row.created_at))
    return TokenUser(uid, node_url, new_row.generation, new_row.keys_changed_at,
                     new_row.client_state)


def _allocate_node(connection, leaving_node, self_is_node=True):
    """``(node id, URL)`` of the best node, counted; ``(None, None)`` with no node list.

    Raises the 503 of §1.7 when there is a node list but no node can take
    the account. ``leaving_node`` (an id or None) is locked with the
    candidates, in id order, and uncounted.
    """
    eligible = (nodes.c.available.is_(True) & nodes.c.downed.is_(False)
                & (nodes.c.backoff == 0) & (nodes.c.current_load < nodes.c.capacity))
    condition = eligible if leaving_node is None else or_(eligible, nodes.c.id == leaving_node)
    locked = connection.execute(
        select(nodes.c.id, nodes.c.url, nodes.c.capacity, nodes.c.current_load,
               nodes.c.available, nodes.c.downed, nodes.c.backoff)
        .where(condition).order_by(nodes.c.id).with_for_update()).all()
    candidates = [row for row in locked
                  if row.available and not row.downed and row.backoff == 0
                  and row.current_load < row.capacity and row.capacity > 0]
    if not candidates:
        if _nodes_exist(connection):
            raise errors.server_error()  # §1.7: no node can take the account
        if not self_is_node:
            logger.warning("tokenserver: the node list is empty and this process serves no "
                           "storage: add a storage node (syncserver-admin node add)")
            raise errors.server_error()
        return None, None
    chosen = min(candidates, key=lambda row: (
        fractions.Fraction(row.current_load, row.capacity), row.current_load, row.id))
    if leaving_node is not None and leaving_node != chosen.id:
        _uncount(connection, leaving_node)
    if leaving_node != chosen.id:
        connection.execute(nodes.update().where(nodes.c.id == chosen.id).values(
            current_load=nodes.c.current_load + 1))
    return chosen.id, chosen.url


def _uncount(connection, node_id):
    if node_id is None:
        return
    connection.execute(nodes.update().where(nodes.c.id == node_id).values(
        current_load=case((nodes.c.current_load > 0, nodes.c.current_load - 1), else_=0)))


def _summary(fxa_uid, blocked, rows):
    current = _current(rows)
    if current is None:
        return AccountSummary(fxa_uid, None, None, None, None, None, None, None, blocked, ())
    return AccountSummary(
        fxa_uid=fxa_uid, uid=current.uid, node_url=current.node_url,
        generation=current.generation, client_state=current.client_state,
        keys_changed_at=current.keys_changed_at, created_at=current.created_at,
        replaced_at=current.replaced_at, blocked=blocked,
        rows=tuple(sorted(rows, key=lambda row: (row.created_at, row.uid), reverse=True)),
        node_state=current.node_state)

