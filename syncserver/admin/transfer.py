"""``export``, ``import`` and ``migrate``: moving accounts and records in and out."""

import contextlib
import os
import sys

from sqlalchemy import exc

from syncserver.admin.context import AdminError
from syncserver.errors import NotSupported
from syncserver.importers import MigrationError, import_accounts
from syncserver.importers.export_file import read_export, write_export
from syncserver.importers.mozilla_sync11 import COLLECTION_TABLES, MozillaSync11Source
from syncserver.importers.weave_minimal import WeaveMinimalSource
from syncserver.wording import count_of

SOURCES = {"mozilla-sync11": "a database URL of Mozilla's Sync 1.1 server",
           "weave-minimal": "a weave-minimal data directory"}


def register(subparsers):
    export = subparsers.add_parser(
        "export", help="write one user's account and records to a JSON-lines file",
        description="Write USER's account (with its password hash: keep the file private) "
                    "and every live record, exactly, to FILE ('-' for standard output).")
    export.add_argument("username")
    export.add_argument("file")
    export.set_defaults(handler=run_export)

    restore = subparsers.add_parser(
        "import", help="restore an account and its records from an export file",
        description="Create the account of FILE (keeping its id when free) and restore its "
                    "records with their timestamps. Running it twice changes nothing.")
    restore.add_argument("file")
    restore.add_argument("--dry-run", action="store_true", help="read and count, write nothing")
    restore.set_defaults(handler=run_import)

    migrate = subparsers.add_parser(
        "migrate", help="copy every account and record of another Sync 1.1 server",
        description="Copy accounts (passwords keep working) and records (timestamps kept "
                    "exactly, so clients continue incrementally) from another server. "
                    "Idempotent: a second run changes nothing.")
    migrate.add_argument("--from", dest="source", required=True, choices=sorted(SOURCES),
                         help="; ".join(f"{name}: {what}" for name, what in SOURCES.items()))
    migrate.add_argument("location", help="database URL or data directory of the old server")
    migrate.add_argument("--collection-ids", choices=sorted(COLLECTION_TABLES), default="fixed",
                         help="mozilla-sync11: which standard collection id table the old "
                              "server used (fixed_collections or standard_collections)")
    migrate.add_argument("--dry-run", action="store_true", help="read and count, write nothing")
    migrate.set_defaults(handler=run_migrate)


def run_export(context, args):
    user = context.auth.get_user(args.username)
    if user is None:
        raise AdminError(f"there is no user {args.username!r}")
    try:
        password_hash = context.auth.get_password_hash(user.username)
    except NotSupported:
        password_hash = None
    with _output(args.file) as stream:
        collections, records = write_export(stream, user, password_hash, context.storage)
    if args.file != "-":
        context.echo(f"exported {user.username}: {count_of(collections, 'collection')}, "
                     f"{count_of(records, 'record')} "
                     f"to {args.file}")
    if password_hash is None:
        context.echo("note: the authentication backend does not reveal password hashes; "
                     "the imported account will need a new password")
    return 0


@contextlib.contextmanager
def _output(path):
    if path == "-":
        yield sys.stdout
        return
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as error:
        raise AdminError(f"cannot write {path}: {error.strerror}") from None
    with open(descriptor, "w", encoding="utf-8") as stream:
        yield stream


def run_import(context, args):
    try:
        accounts = read_export(args.file)
        report = import_accounts(accounts, context.storage, context.auth, dry_run=args.dry_run)
    except MigrationError as error:
        raise AdminError(str(error)) from None
    _print_report(context, report)
    return 0


def run_migrate(context, args):
    try:
        if args.source == "mozilla-sync11":
            source = MozillaSync11Source(args.location, collection_ids=args.collection_ids)
        else:
            source = WeaveMinimalSource(args.location)
        try:
            with context.progress("accounts", source.count()) as progress:
                report = import_accounts(source.accounts(), context.storage, context.auth,
                                         dry_run=args.dry_run, progress=progress)
        finally:
            source.close()
    except MigrationError as error:
        raise AdminError(str(error)) from None
    except exc.SQLAlchemyError as error:
        raise AdminError(f"reading the old database failed: {error.orig or error}") from None
    _print_report(context, report)
    return 0


def _print_report(context, report):
    if report.dry_run:
        context.echo("dry run: nothing was written")
    for line in report.lines():
        context.echo(line)
