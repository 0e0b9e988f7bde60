"""Moving accounts and records into this server: from an export file or another server.

Every source (an export file, a Mozilla Sync 1.1 database, a weave-minimal
data directory) is read into the same shapes, :class:`SourceAccount` and
:class:`SourceCollection`, and :func:`import_accounts` writes them through the
storage and auth interfaces. Records keep their ``modified`` stamps, sort
indexes and expiry exactly, so a client continues incrementally with
``newer=`` its last sync. Running an import twice changes nothing.
"""

import dataclasses
from collections.abc import Callable, Iterable

from syncserver.auth import UserExists, UserIdTaken
from syncserver.errors import NotSupported
from syncserver.storage import StoredRecord

#: Records restored per transaction: big collections never hold one long lock.
RESTORE_CHUNK = 500


@dataclasses.dataclass
class SourceCollection:
    """One collection of an account in a source: its timestamp and live records."""

    name: str
    timestamp: int
    records: Iterable[StoredRecord]


@dataclasses.dataclass
class SourceAccount:
    """An account in a source. ``userid`` is the id to keep when it is free."""

    username: str
    password_hash: str | None
    email: str | None = None
    enabled: bool = True
    userid: int | None = None
    collections: Callable[[], Iterable[SourceCollection]] = tuple


@dataclasses.dataclass
class ImportReport:
    """What an import did (or, in a dry run, would do)."""

    dry_run: bool = False
    accounts_created: int = 0
    accounts_present: int = 0
    ids_changed: list = dataclasses.field(default_factory=list)
    accounts_skipped: list = dataclasses.field(default_factory=list)
    collections: int = 0
    records: int = 0
    payload_bytes: int = 0

    def lines(self):
        verb = "would be" if self.dry_run else "was"
        lines = [
            f"accounts created: {self.accounts_created}",
            f"accounts already present (records merged): {self.accounts_present}",
            f"collections: {self.collections}",
            f"records: {self.records}",
            f"payload bytes: {self.payload_bytes}",
        ]
        for username, old, new in self.ids_changed:
            lines.append(f"user {username}: id {old} was taken, so it {verb} given id {new}")
        for username, reason in self.accounts_skipped:
            lines.append(f"user {username} skipped: {reason}")
        return lines


class MigrationError(Exception):
    """The source cannot be read or the target cannot take it; one sentence."""


def import_accounts(accounts, storage, auth, *, dry_run=False, progress=None):
    """Create each account (keeping its id when free) and restore its collections.

    ``progress`` (optional) gets ``advance(1)`` per account. Returns an
    :class:`ImportReport`.
    """
    report = ImportReport(dry_run=dry_run)
    for account in accounts:
        user_id = _ensure_account(account, auth, report, dry_run)
        if user_id is not None:
            for collection in account.collections():
                _restore_collection(storage, user_id, collection, report, dry_run)
        if progress is not None:
            progress.advance(1)
    return report


def _ensure_account(account, auth, report, dry_run):
    """The target user id for ``account``, creating the account if needed; None to skip."""
    existing = auth.get_user(account.username)
    if existing is not None:
        report.accounts_present += 1
        return existing.user_id
    if not account.password_hash:
        report.accounts_skipped.append((account.username, "the source holds no password hash"))
        return None
    if dry_run:
        report.accounts_created += 1
        return account.userid if account.userid is not None else -1
    try:
        user = auth.import_user(account.username, account.password_hash, account.email,
                                userid=account.userid, enabled=account.enabled)
    except NotSupported:
        raise MigrationError(
            f"the authentication backend {_backend_name(auth)} cannot import accounts "
            "with their password hashes; import into a server using auth.backend = sql"
        ) from None
    except UserIdTaken:
        user = auth.import_user(account.username, account.password_hash, account.email,
                                enabled=account.enabled)
        report.ids_changed.append((account.username, account.userid, user.user_id))
    except ValueError as error:  # a username or e-mail this server cannot hold
        report.accounts_skipped.append((account.username, str(error)))
        return None
    except UserExists:  # created meanwhile, by a client or a parallel import
        user = auth.get_user(account.username)
        report.accounts_present += 1
        return user.user_id
    report.accounts_created += 1
    return user.user_id


def _restore_collection(storage, user_id, collection, report, dry_run):
    report.collections += 1
    chunk = []
    for record in collection.records:
        report.records += 1
        report.payload_bytes += len((record.payload or "").encode("utf-8"))
        chunk.append(record)
        if len(chunk) >= RESTORE_CHUNK:
            if not dry_run:
                storage.restore_records(user_id, collection.name, chunk, collection.timestamp)
            chunk = []
    if not dry_run:
        storage.restore_records(user_id, collection.name, chunk, collection.timestamp)


def _backend_name(auth):
    """The configured backend's class name (the server wraps it in a login cache)."""
    return type(getattr(auth, "backend", auth)).__name__
