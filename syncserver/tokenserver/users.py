"""The Sync 1.5 users: which numeric uid and node a Mozilla account syncs to, and the rules.

One Mozilla account (FxA uid) has one or more rows; the *current* one (the
largest ``(generation, created_at)``) gives the uid and node its tokens
carry. A new client state (the user reset their Sync keys) gets a new row,
hence a new uid and empty storage, on the same node; a node that is gone
or downed gets the account a new row on another node. Every older row
records a client state that may never come back.

:func:`plan_request` is the bookkeeping algorithm of reference §1.6 (steps
A and C-F) as a pure function of the account's rows: it says what to
write, or raises the protocol's refusal, and touches no database. A
backend (:class:`TokenUserBackend`, the SQL one is
:mod:`syncserver.tokenserver.users_sql`) loads the rows, applies the
policy and step B, and carries the plan out in **one transaction per
account**, so two racing requests never both create or change the account.
Rejections are decided before anything is written.
"""

import abc
import dataclasses

from syncserver.errors import BackendUnavailable
from syncserver.plugins import Plugin
from syncserver.tokenserver import errors

#: ``generation`` of a retired account (deleted at FxA): the largest signed 64-bit value.
MAX_GENERATION = 2**63 - 1
#: How many of an account's rows are read (the newest first), as upstream.
MAX_ROWS = 20
#: Tokenserver rows are keyed by "e-mail" ``<fxa uid>@<domain>``, as Mozilla's are (§1.4).
FXA_EMAIL_DOMAIN = "api.accounts.firefox.com"


class TokenUsersUnavailable(BackendUnavailable):
    """The tokenserver's database did not answer (503)."""

    service = "tokenserver"


class NoSuchTokenUser(Exception):
    """An admin command named an account that has no row."""


def account_email(fxa_uid):
    """The ``email`` column of an account: ``<fxa uid>@api.accounts.firefox.com``."""
    return f"{fxa_uid}@{FXA_EMAIL_DOMAIN}"


@dataclasses.dataclass(frozen=True)
class UserRow:
    """One row of an account as the backend read it, with its node's state.

    ``node_state`` is ``"ok"``, ``"gone"`` (no node, or the node was removed)
    or ``"downed"``; a row on this server itself (no node list) is ``"ok"``
    with ``node_id`` None.
    """

    uid: int
    generation: int
    client_state: str
    keys_changed_at: int | None
    created_at: int
    replaced_at: int | None
    node_id: int | None
    node_url: str | None
    node_state: str = "ok"
    #: When ``purge-expired`` deleted the storage of this replaced uid (ms), or None.
    purged_at: int | None = None


@dataclasses.dataclass(frozen=True)
class NewRow:
    """A row to insert: new uid. ``allocate``: on a newly chosen node, else on ``node_id``."""

    generation: int
    client_state: str
    keys_changed_at: int | None
    created_at: int
    allocate: bool
    node_id: int | None = None
    node_url: str | None = None


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one token request writes; ``current`` answers it when no row is inserted."""

    current: UserRow
    #: Race repair (step A): ``(uid, replaced_at)`` of older rows still marked current.
    repairs: tuple = ()
    new_row: NewRow | None = None
    #: In-place update (step F): ``(generation, keys_changed_at)``.
    update: tuple | None = None

    @property
    def writes(self):
        return bool(self.repairs or self.new_row or self.update)


@dataclasses.dataclass(frozen=True)
class TokenUser:
    """The answer to a token request: the uid and node its token carries.

    ``node_url`` is None when the server itself is the node (no node list).
    ``generation`` and ``keys_changed_at`` are the values now stored.
    """

    uid: int
    node_url: str | None
    generation: int
    keys_changed_at: int | None
    client_state: str


@dataclasses.dataclass(frozen=True)
class AccountSummary:
    """An account as ``syncserver-admin token-user`` shows it: its current row and flags."""

    fxa_uid: str
    uid: int | None
    node_url: str | None
    generation: int | None
    client_state: str | None
    keys_changed_at: int | None
    created_at: int | None
    replaced_at: int | None
    blocked: bool
    #: Every row, newest first (the current one included).
    rows: tuple = ()
    #: The current row's :attr:`UserRow.node_state` (None without a row).
    node_state: str | None = None


@dataclasses.dataclass(frozen=True)
class ReplacedUid:
    """A replaced uid whose storage is due for deletion (``syncserver-admin purge-expired``).

    ``node_url`` is the node the uid's records were written to, or None when
    they went to the server that was the node itself (no node list then) or
    the node was removed; ``node_state`` is ``"listed"``, ``"this server"``
    (no node) or ``"gone"`` (the node was removed from the list).
    """

    uid: int
    fxa_uid: str
    replaced_at: int
    node_url: str | None
    node_state: str


def new_account_row(generation, keys_changed_at, client_state, now_ms):
    """Step B: the first row of an account, on a node to be chosen."""
    return NewRow(generation=generation or 0, client_state=client_state,
                  keys_changed_at=keys_changed_at, created_at=now_ms, allocate=True)


def plan_request(rows, generation, keys_changed_at, client_state, now_ms):
    """Steps A, C, D, E and F of §1.6 for an account with ``rows`` (at least one).

    ``generation`` (G, from the access token) and ``keys_changed_at`` (K,
    from X-KeyID) are None when absent (0 counts as absent);
    ``client_state`` (C) is hex, maybe empty. Raises the protocol's
    :class:`~syncserver.tokenserver.errors.TokenserverError` when rule D
    refuses, before anything would be written.
    """
    rows = sorted(rows, key=lambda row: (row.generation, row.created_at, row.uid), reverse=True)
    current, older = rows[0], rows[1:]
    old_client_states = {row.client_state for row in older} - {current.client_state}
    repairs = tuple((row.uid, current.created_at) for row in older if row.replaced_at is None)

    # C: a current row that was replaced, or whose node is gone or down, moves.
    relocate = current.replaced_at is not None or current.node_state != "ok"
    if relocate and current.generation >= MAX_GENERATION:
        if current.node_state == "gone":
            raise errors.server_error(http_status=500)  # a retired account with no node
        relocate = False  # kept as it is: rule D6 refuses it below

    _validate(current, old_client_states, generation, keys_changed_at, client_state)

    # E: the new values.
    stored_k = current.keys_changed_at or None
    new_k = keys_changed_at if keys_changed_at is not None else stored_k
    if generation is not None:
        new_generation = generation
    elif keys_changed_at is not None and (stored_k is None or keys_changed_at > stored_k) \
            and keys_changed_at > current.generation:
        new_generation = keys_changed_at
    else:
        new_generation = current.generation

    # F: a new client state, or a move, is a new row (a new uid); else update in place.
    key_change = client_state != current.client_state
    if key_change or relocate:
        # Later than the current row even within one millisecond, so it sorts first.
        created_at = max(now_ms, current.created_at + 1)
        new_row = NewRow(generation=new_generation, client_state=client_state,
                         keys_changed_at=new_k, created_at=created_at, allocate=relocate,
                         node_id=None if relocate else current.node_id,
                         node_url=None if relocate else current.node_url)
        return Plan(current, repairs, new_row=new_row)
    update = None
    if new_generation != current.generation or new_k != stored_k:
        update = (new_generation, new_k)
    return Plan(current, repairs, update=update)


def _validate(current, old_client_states, generation, keys_changed_at, client_state):
    """Step D: the first rule that fires refuses the request."""
    stored_k = current.keys_changed_at or None
    both_k = keys_changed_at is not None and stored_k is not None
    changed = client_state != current.client_state
    if both_k and keys_changed_at > stored_k and generation is not None \
            and generation < keys_changed_at:
        raise errors.invalid_keys_changed_at()                                   # D1
    if current.client_state and not client_state:
        raise errors.unacceptable_client_state("empty string")                   # D2
    if client_state in old_client_states:
        raise errors.unacceptable_client_state("stale value")                    # D3
    if changed and generation is not None and generation <= current.generation:
        raise errors.unacceptable_client_state(
            "new value with no generation change")                               # D4
    if changed and both_k and keys_changed_at <= stored_k:
        raise errors.unacceptable_client_state(
            "new value with no keys_changed_at change")                          # D5
    if generation is not None and current.generation > generation:
        raise errors.invalid_generation()                                        # D6
    if both_k and stored_k > keys_changed_at:
        raise errors.invalid_keys_changed_at()                                   # D7
    if keys_changed_at is None and stored_k is not None:
        raise errors.invalid_keys_changed_at()                                   # D8


class TokenUserBackend(Plugin, abc.ABC):
    """Where the Sync 1.5 users are kept; thread-safe, one instance serves every thread.

    Every method may raise :class:`TokenUsersUnavailable` when its
    database is down. ``fxa_uid`` values are the verified JWT ``sub``.
    """

    @classmethod
    @abc.abstractmethod
    def from_settings(cls, settings):
        """Build from a :class:`syncserver.settings.TokenserverSettings`."""

    @abc.abstractmethod
    def get_user(self, fxa_uid, generation, keys_changed_at, client_state, policy):
        """The :class:`TokenUser` for a verified token request, after §1.6 and ``policy``.

        Creates the account (step B) when it has no row and ``policy``
        (an :class:`~syncserver.tokenserver.policy.AccessPolicy`) allows it.
        Raises :class:`~syncserver.tokenserver.errors.TokenserverError`
        (:class:`~syncserver.tokenserver.errors.AccessRefused` for the policy
        and blocked accounts; a 503 when no node can take the account).
        Nothing is written when it raises.
        """

    @abc.abstractmethod
    def list_accounts(self):
        """Every :class:`AccountSummary` by current uid (blocked accounts with no row last)."""

    @abc.abstractmethod
    def get_account(self, fxa_uid):
        """The :class:`AccountSummary` with all its rows, or None (no row and not blocked)."""

    @abc.abstractmethod
    def find_fxa_uid(self, uid):
        """The FxA uid whose row has the Sync ``uid``, or None."""

    @abc.abstractmethod
    def set_blocked(self, fxa_uid, blocked):
        """Block (its token requests are refused) or unblock the account; works before any row."""

    @abc.abstractmethod
    def reassign(self, fxa_uid):
        """Mark the current row replaced: the next request gets a new uid on the best node.

        Returns the uid given up. Raises :class:`NoSuchTokenUser`.
        """

    @abc.abstractmethod
    def delete_account(self, fxa_uid):
        """Forget the account: every row and its flags; returns the uids it had (oldest first).

        Their records are the caller's to delete (see
        :func:`syncserver.storage.sync15_user_id`).
        Raises :class:`NoSuchTokenUser`.
        """

    def replaced_uids(self, replaced_before_ms, limit, after_uid=0):
        """Up to ``limit`` :class:`ReplacedUid` replaced at or before ``replaced_before_ms``.

        Only those whose storage is not purged yet, by increasing uid above
        ``after_uid`` (the caller pages with the last uid it got). A replaced
        row is never handed out in a token again, so its uid's storage can
        only be written by tokens minted before ``replaced_at``.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot list replaced uids")

    def mark_purged(self, uids):
        """Record that the storage of these replaced ``uids`` is deleted; returns how many.

        Idempotent: a uid already marked, or no longer known (its account
        deleted meanwhile), is left as it is.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot mark uids purged")

    @abc.abstractmethod
    def count_accounts(self):
        """How many accounts have rows."""

    @abc.abstractmethod
    def count_by_node(self):
        """``{node URL or None (this server): accounts whose current row is there}``."""

    def is_healthy(self):
        """True when the users can be read now (the heartbeat's check); never raises."""
        try:
            self.count_accounts()
        except TokenUsersUnavailable:
            return False
        return True

    def close(self):
        """Release connections. The default does nothing."""
