"""``syncserver-admin db ...``: the Alembic migrations, on the databases of the ini file.

Every SQL database of the configuration (``storage.sqluri``, ``auth.sqluri``
and the others in use) is handled in turn, once each; see
:mod:`syncserver.migrations` and docs/migrations.rst.
"""

import contextlib

from syncserver import migrations
from syncserver.admin.context import AdminError, redact_url
from syncserver.db import engines
from syncserver.db.errors import translate_errors
from syncserver.errors import BackendUnavailable


def register(subparsers):
    db = subparsers.add_parser("db", help="create or upgrade the database schema (migrations)")
    actions = db.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    upgrade = actions.add_parser("upgrade", help="create or upgrade the schema (to the newest)")
    upgrade.add_argument("revision", nargs="?", default="head",
                         help="target revision (default: head)")
    upgrade.set_defaults(handler=upgrade_databases)

    current = actions.add_parser("current", help="each database's revision")
    current.set_defaults(handler=show_current)

    stamp = actions.add_parser(
        "stamp", help="record a revision without running anything (repairs)")
    stamp.add_argument("revision")
    stamp.set_defaults(handler=stamp_databases)

    history = actions.add_parser("history", help="the revisions this version knows")
    history.set_defaults(handler=show_history)


def upgrade_databases(context, args):
    for url, engine in _engines(context):
        with _errors(url):
            with engine.connect() as connection:
                before = migrations.current_revision(connection)
            migrations.run_command("upgrade", migrations.alembic_config(engines=[engine]),
                                   args.revision)
            with engine.connect() as connection:
                after = migrations.current_revision(connection)
        shown = redact_url(url)
        if before == after:
            context.echo(f"{shown}: already at {after}.")
        else:
            context.echo(f"{shown}: upgraded from {before or 'nothing'} to {after}.")
    return 0


def show_current(context, args):
    head = migrations.head_revision()
    behind = False
    for url, engine in _engines(context):
        with _errors(url), engine.connect() as connection:
            revision = migrations.current_revision(connection)
        shown = redact_url(url)
        if revision == head:
            context.echo(f"{shown}: {revision} (head)")
        else:
            behind = True
            context.echo(f"{shown}: {revision or 'no revision'} (head is {head}: "
                         "run syncserver-admin db upgrade)")
    return 1 if behind else 0


def stamp_databases(context, args):
    for url, engine in _engines(context):
        with _errors(url):
            migrations.run_command("stamp", migrations.alembic_config(engines=[engine]),
                                   args.revision)
        context.echo(f"{redact_url(url)}: stamped {args.revision}.")
    return 0


def show_history(context, args):
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrations.alembic_config())
    for revision in reversed(list(script.walk_revisions())):
        head = " (head)" if revision.is_head else ""
        context.echo(f"{revision.revision}{head}  {revision.doc.splitlines()[0]}")
    return 0


def _engines(context):
    urls = context.settings.sql_urls()
    if not urls:
        raise AdminError("no SQL database is configured (storage.sqluri, auth.sqluri).")
    for url in urls:
        engine = engines.create_engine(url, pool_size=1)
        try:
            yield url, engine
        finally:
            engine.dispose()


@contextlib.contextmanager
def _errors(url):
    """Database down, or a revision Alembic refuses: one sentence that names the database."""
    from alembic.util import CommandError

    try:
        with translate_errors(BackendUnavailable):
            yield
    except BackendUnavailable as error:
        raise BackendUnavailable(f"{redact_url(url)}: {error}") from error
    except CommandError as error:
        raise AdminError(f"{redact_url(url)}: {error}.") from None
