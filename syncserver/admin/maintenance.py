"""``syncserver-admin purge-expired`` and ``stats``: keeping the store tidy and measured.

With the tokenserver on, ``purge-expired`` also deletes the storage of the
Sync 1.5 uids replaced more than ``tokenserver.replaced_grace_seconds`` ago
(:mod:`syncserver.admin.replaced_uids`), here or on their storage node.

After a purge, ``purge-expired`` asks the backend to give the freed space back
to the file system (:meth:`~syncserver.storage.StorageBackend.reclaim_space`:
a SQLite file's incremental vacuum, in short steps); ``--vacuum`` also lets
it rebuild a file that cannot do that (a SQLite file created before
``auto_vacuum=INCREMENTAL``), blocking writers while it runs.
"""

import argparse
import contextlib
import os
import time

from syncserver.admin.context import AdminError, format_bytes
from syncserver.admin.replaced_uids import purge_replaced
from syncserver.errors import NotSupported
from syncserver.wording import count_of

#: The niceness the purge runs at (at least) by default. On a small machine
#: (bench/purge_scale.py, 2 CPUs) a purge at the server's priority doubled the
#: p99 of every sync request, reads included; at 10 it took CPU only when the
#: server left some, and purged no slower.
DEFAULT_PURGE_NICENESS = 10


def register(subparsers):
    purge = subparsers.add_parser(
        "purge-expired", help="delete expired (TTL) items, and replaced Sync 1.5 uids' storage",
        description="Deletes the items whose TTL has passed, a batch at a time, each in short "
                    "transactions: safe to run from cron while the server serves. With the "
                    "tokenserver on, also deletes the storage of Sync 1.5 uids replaced more "
                    "than tokenserver.replaced_grace_seconds ago (a key change, a move to "
                    "another node), here or through their storage node's API.")
    purge.add_argument("--batch-size", type=_positive, default=1000, metavar="N",
                       help="items per batch (default 1000)")
    purge.add_argument("--pause", type=float, default=0.0, metavar="SECONDS",
                       help="sleep between batches, to leave the database to the server")
    purge.add_argument("--nice", type=_niceness, default=DEFAULT_PURGE_NICENESS, metavar="N",
                       help="run at this niceness at least (default "
                            f"{DEFAULT_PURGE_NICENESS}: the server's requests get the CPU first; "
                            "0 keeps the priority it was started with)")
    purge.add_argument("--dry-run", action="store_true",
                       help="only count the expired items and the replaced uids due")
    purge.add_argument("--no-reclaim", action="store_true",
                       help="leave the freed space in the database file")
    purge.add_argument("--vacuum", action="store_true",
                       help="SQLite files made before incremental vacuum: rebuild the file once "
                            "(blocks writers while it runs) so that it can shrink from then on")
    purge.add_argument("--json", action="store_true", help="the summary as JSON")
    purge.set_defaults(handler=purge_expired)

    stats = subparsers.add_parser(
        "stats", help="accounts, items and bytes, per collection",
        description="Reads every live item: expect a full scan on a large store.")
    stats.add_argument("--json", action="store_true", help="a JSON object")
    stats.set_defaults(handler=show_stats)


def purge_expired(context, args):
    storage = context.storage_if_served
    if storage is None:  # a tokenserver only: its replaced uids are all there is
        return _purge_replaced_only(context, args)
    # One cut-off for the whole run: items expiring meanwhile wait for the next one.
    now = int(time.time())
    try:
        expired = storage.count_expired(now)
    except NotSupported:
        expired = None
    if args.dry_run:
        summary = {"expired": expired, "purged": 0, "batches": 0, "seconds": 0.0}
        replaced = _purge_replaced(context, args, storage)
        if replaced is not None:
            summary["replaced_uids"] = replaced.as_json()
        _report_purge(context, args, summary, dry_run=True)
        return 0
    _lower_priority(context, args.nice)
    started = time.monotonic()
    purged = batches = 0
    with context.progress("purging expired items", expired) as progress:
        while True:
            count = storage.purge_expired(now, args.batch_size)
            if count == 0:
                break
            purged += count
            batches += 1
            progress.advance(count)
            if args.pause:
                time.sleep(args.pause)
    summary = {"expired": expired, "purged": purged, "batches": batches,
               "seconds": round(time.monotonic() - started, 2), "reclaimed_bytes": None}
    replaced = _purge_replaced(context, args, storage)
    if replaced is not None:
        summary["replaced_uids"] = replaced.as_json()
    if not args.no_reclaim:
        summary["reclaimed_bytes"] = storage.reclaim_space(full=args.vacuum)
    _report_purge(context, args, summary, dry_run=False)
    return 1 if replaced is not None and replaced.failed else 0


def _purge_replaced_only(context, args):
    replaced = _purge_replaced(context, args, None)
    if args.json:
        context.echo_json({"replaced_uids": replaced.as_json()})
        _report_failures(context, replaced.as_json())
    elif args.dry_run:
        context.echo(f"{count_of(replaced.due, 'replaced Sync 1.5 uid')} past the grace "
                     "period would have their storage deleted.")
    else:
        _report_replaced(context, replaced.as_json())
    return 1 if replaced.failed else 0


def _purge_replaced(context, args, storage):
    """The replaced Sync 1.5 uids' part of the run (None with the tokenserver off)."""
    if not context.settings.tokenserver.enabled:
        return None
    # Replacements are stamped in milliseconds: the cut-off is not rounded to the second.
    return purge_replaced(context.token_users, storage, context.settings, now=time.time(),
                          batch_size=args.batch_size, dry_run=args.dry_run)


def _report_purge(context, args, summary, dry_run):
    if args.json:
        context.echo_json(summary)
        if summary.get("replaced_uids"):
            _report_failures(context, summary["replaced_uids"])
    elif dry_run:
        known = ("An unknown number of expired items" if summary["expired"] is None
                 else count_of(summary["expired"], "expired item"))
        context.echo(f"{known} would be purged.")
        replaced = summary.get("replaced_uids")
        if replaced is not None:
            context.echo(f"{count_of(replaced['due'], 'replaced Sync 1.5 uid')} past the grace "
                         "period would have their storage deleted.")
    else:
        context.echo(f"Purged {count_of(summary['purged'], 'expired item')} in "
                     f"{count_of(summary['batches'], 'batch', 'batches')} of up to "
                     f"{args.batch_size} ({summary['seconds']:.2f} s).")
        replaced = summary.get("replaced_uids")
        if replaced is not None:
            _report_replaced(context, replaced)
        if summary["reclaimed_bytes"]:
            context.echo(f"Gave {format_bytes(summary['reclaimed_bytes'])} back to the "
                         "file system.")


def _report_replaced(context, replaced):
    deleted = count_of(replaced["here"] + replaced["on_nodes"], "replaced Sync 1.5 uid")
    context.echo(f"Deleted the storage of {deleted} ({replaced['here']} here, "
                 f"{replaced['on_nodes']} through their node); {replaced['node_gone']} on "
                 "removed nodes marked purged.")
    _report_failures(context, replaced)


def _report_failures(context, replaced):
    for node, reason in replaced["failures"].items():
        context.stderr.write(f"syncserver-admin: not purged on {node}: {reason}\n")
    if replaced["failed"]:
        context.stderr.write(f"syncserver-admin: {count_of(replaced['failed'], 'replaced uid')} "
                             "left for the next run.\n")


def show_stats(context, args):
    sync15 = _sync15_users(context)
    if context.storage_if_served is None:  # a tokenserver only
        return _show_sync15_users(context, args, sync15)
    try:
        statistics = context.storage.get_statistics(int(time.time()))
    except NotImplementedError as error:
        raise AdminError(f"{error}.") from None
    accounts, no_count = None, "unknown (the backend cannot count)"
    if context.settings.serves_accounts:
        with contextlib.suppress(NotImplementedError):
            accounts = context.auth.count_users()
    else:
        no_count = "none (sync11.enabled is false)"
    if args.json:
        summary = {
            "accounts": accounts, "users_with_data": statistics.users,
            "items": statistics.items, "bytes": statistics.bytes,
            "expired_items": statistics.expired_items,
            "collections": {name: {"users": c.users, "items": c.items, "bytes": c.bytes}
                            for name, c in statistics.collections.items()}}
        if sync15 is not None:
            summary["sync15_users"] = _sync15_json(sync15)
        context.echo_json(summary)
        return 0
    context.echo_fields([
        ("accounts", accounts if accounts is not None else no_count),
        ("users with data", statistics.users),
        ("items", statistics.items),
        ("payloads", format_bytes(statistics.bytes)),
        ("expired items", f"{statistics.expired_items} (purge-expired deletes them)"),
    ])
    if statistics.collections:
        context.echo()
        context.echo_table(["COLLECTION", "USERS", "ITEMS", "BYTES"], [
            [name, c.users, c.items, c.bytes] for name, c in statistics.collections.items()])
    if sync15 is not None:
        context.echo()
        _echo_sync15_users(context, sync15)
    return 0


def _show_sync15_users(context, args, sync15):
    """``stats`` of a tokenserver that keeps no records: its users per node."""
    if args.json:
        context.echo_json({"sync15_users": _sync15_json(sync15)})
    else:
        _echo_sync15_users(context, sync15)
    return 0


def _sync15_json(sync15):
    return {"total": sync15[0], "by_node": {
        node or THIS_SERVER: count for node, count in sync15[1].items()}}


def _echo_sync15_users(context, sync15):
    total, by_node = sync15
    context.echo(f"Sync 1.5 users: {total}")
    if by_node:
        context.echo_table(["NODE", "USERS"], [
            [node or THIS_SERVER, count] for node, count in sorted(
                by_node.items(), key=lambda item: (item[0] is None, item[0] or ""))])


#: How ``stats`` names the users served by this server itself (no node list).
THIS_SERVER = "(this server)"


def _sync15_users(context):
    """``(accounts, {node URL or None: accounts})`` with the tokenserver on, else None.

    Accounts awaiting a move (reassigned, node downed) count on their old node.
    """
    if not context.settings.tokenserver.enabled:
        return None
    users = context.token_users
    return users.count_accounts(), users.count_by_node()


def _whole_number(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _positive(text):
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _lower_priority(context, niceness):
    """Run at ``niceness`` at least (the purge yields the CPU to the server).

    Raised to it, not by it: a second purge in the same process (tests, a
    script calling ``main`` twice) does not lower it further.
    """
    current = os.nice(0)
    if niceness <= current:
        return
    try:
        os.nice(niceness - current)
    except OSError as error:  # not permitted here (some containers): purge anyway
        print(f"note: could not lower the purge's CPU priority ({error})", file=context.stderr)


def _niceness(text):
    value = _whole_number(text)
    if not 0 <= value <= 19:
        raise argparse.ArgumentTypeError("must be from 0 to 19")
    return value
