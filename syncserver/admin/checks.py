"""``syncserver-admin check``: is everything the server depends on there? One line each.

Each check is a small function of the :class:`AdminContext` in :data:`CHECKS`
returning a :class:`CheckResult`, or None when what it checks is not
configured. A check that raises fails with the error's sentence; the others
still run (all but the configuration check, which they all need).
"""

import dataclasses

from syncserver import migrations, sqldb
from syncserver.admin.context import redact_url
from syncserver.errors import BackendUnavailable


@dataclasses.dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def register(subparsers):
    check = subparsers.add_parser(
        "check", help="configuration, databases and schema: one line each",
        description="Exit code 0 when every check passes, 1 otherwise.")
    check.add_argument("--json", action="store_true", help="a JSON array")
    check.set_defaults(handler=run_checks)


def check_configuration(context):
    settings = context.settings
    return CheckResult("configuration", True,
                       f"{context.config_path}: storage {_backend_name(settings.storage)}, "
                       f"auth {_backend_name(settings.auth)}")


def check_storage(context):
    storage = context.storage
    where = _where(context.settings.storage.sqluri)
    if storage.is_healthy():
        return CheckResult("storage", True, f"answers{where}")
    return CheckResult("storage", False, f"does not answer{where}")


def check_auth(context):
    auth = context.auth
    where = _where(context.settings.auth.sqluri)
    if auth.is_healthy():
        return CheckResult("auth", True, f"answers{where}")
    return CheckResult("auth", False, f"does not answer{where}")


def check_schema(context):
    """Every SQL database at the newest revision (``db upgrade`` otherwise)."""
    urls = migrations.database_urls(context.settings)
    if not urls:
        return None
    head = migrations.head_revision()
    problems, fine = [], []
    for url in urls:
        shown = redact_url(url)
        engine = sqldb.create_engine(url, pool_size=1)
        try:
            with sqldb.translate_errors(BackendUnavailable), engine.connect() as connection:
                revision = migrations.current_revision(connection)
        except BackendUnavailable as error:
            problems.append(f"{shown}: {error}")
            continue
        finally:
            engine.dispose()
        if revision == head:
            fine.append(shown)
        else:
            problems.append(f"{shown} is at {revision or 'no revision'}, needs {head} "
                            "(run: syncserver-admin db upgrade)")
    if problems:
        return CheckResult("schema", False, "; ".join(problems))
    return CheckResult("schema", True, f"at {head}: {', '.join(fine)}")


#: Run in this order; the lead adds cache, directory and SMTP checks here.
CHECKS = (check_configuration, check_storage, check_auth, check_schema)


def run_checks(context, args):
    results = []
    for check in CHECKS:
        try:
            result = check(context)
        except Exception as error:  # a failed check is a result, not a crash
            name = check.__name__.removeprefix("check_")
            result = CheckResult(name, False, str(error).strip().splitlines()[0]
                                 if str(error).strip() else type(error).__name__)
        if result is None:
            continue
        results.append(result)
        if not args.json:
            context.echo(f"{'ok' if result.ok else 'FAIL':<4}  {result.name:<13}  {result.detail}")
        if check is check_configuration and not result.ok:
            break
    if args.json:
        context.echo_json([dataclasses.asdict(result) for result in results])
    failed = [result.name for result in results if not result.ok]
    if failed:
        context.stderr.write(f"syncserver-admin: check failed: {', '.join(failed)}\n")
        return 1
    return 0


def _backend_name(section):
    backend = section.backend
    return f"{backend.__module__}.{backend.__qualname__}"


def _where(url):
    return f" ({redact_url(url)})" if url else ""
