"""``syncserver-admin check``: is everything the server depends on there? One line each.

Each check is a small function of the :class:`AdminContext` in :data:`CHECKS`
returning a :class:`CheckResult`, or None when what it checks is not
configured. A check that raises fails with the error's sentence; the others
still run (all but the configuration check, which they all need).
"""

import dataclasses
import sys
import time

from syncserver import migrations
from syncserver.admin.context import redact_url
from syncserver.db import engines
from syncserver.db.errors import translate_errors
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
    """The ini file parses; says what the process serves (its shape) and with which backends."""
    settings = context.settings
    parts = []
    if settings.serves_storage:
        parts.append(f"storage {_backend_name(settings.storage)}")
    if settings.serves_accounts:
        parts.append(f"auth {_backend_name(settings.auth)}")
    parts.append(f"serves {', '.join(settings.serves)}")
    return CheckResult("configuration", True, f"{context.config_path}: {', '.join(parts)}")


def check_storage(context):
    if not context.settings.serves_storage:
        return None
    storage = context.storage
    where = _where(context.settings.storage.sqluri)
    if storage.is_healthy():
        return CheckResult("storage", True, f"answers{where}")
    return CheckResult("storage", False, f"does not answer{where}")


def check_auth(context):
    if not context.settings.serves_accounts:
        return None
    auth = context.auth.backend
    where = _where(context.settings.auth.sqluri)
    if auth.is_healthy():
        return CheckResult("auth", True, f"answers{where}")
    return CheckResult("auth", False, f"does not answer{where}")


def check_schema(context):
    """Every SQL database at the newest revision (``db upgrade`` otherwise)."""
    urls = context.settings.sql_urls()
    if not urls:
        return None
    head = migrations.head_revision()
    problems, fine = [], []
    for url in urls:
        shown = redact_url(url)
        engine = engines.create_engine(url, pool_size=1)
        try:
            with translate_errors(BackendUnavailable), engine.connect() as connection:
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


def check_cache(context):
    """The Redis cache in front of the storage (``storage.backend = redis``) answers PING."""
    storage_settings = context.settings.storage
    if not context.settings.serves_storage:
        return None
    if not _is_backend(storage_settings.backend, "syncserver.storage.redis", "RedisCachedStorage"):
        return None
    import redis

    where = redact_url(storage_settings.backend_settings.redis_url)
    try:
        context.storage.client.ping()
    except redis.RedisError as error:
        # The server still answers from the database, but without its cache.
        return CheckResult("cache", False, f"{where}: {type(error).__name__}: {error}")
    return CheckResult("cache", True, f"Redis answers ({where})")


def check_directory(context):
    """The LDAP service account binds and sees ``auth.users_base_dn``."""
    if not context.settings.serves_accounts:
        return None
    if not _is_backend(context.settings.auth.backend, "syncserver.auth.ldap", "LDAPAuth"):
        return None
    auth = context.auth.backend
    auth.check_search_base()
    mode = "read-write" if auth.manages_accounts else "read-only"
    return CheckResult("directory", True,
                       f"{auth.connector.uri}: {auth.users_base_dn} readable ({mode})")


def check_smtp(context):
    """The SMTP server greets, and STARTTLS/login work as configured; no mail is sent."""
    smtp = context.settings.smtp
    if not smtp.host or not context.settings.serves_accounts:
        return None
    from syncserver.accounts.mail import Mailer, MailUnavailable

    steps = ["EHLO"] + (["STARTTLS"] if smtp.starttls and not smtp.ssl else []) + (
        ["login"] if smtp.user else [])
    try:
        Mailer(smtp).check()
    except MailUnavailable as error:
        return CheckResult("smtp", False, str(error))
    return CheckResult("smtp", True, f"{smtp.host}:{smtp.port}: {', '.join(steps)} ok")


def check_nodes(context):
    """The node list (``nodes.*``) can be read, when this server uses one."""
    nodes = context.settings.nodes
    if not nodes.in_use:
        return None
    listed = context.nodes.list_nodes()
    return CheckResult("nodes", True, f"{len(listed)} node(s){_where(nodes.sqluri)}")


def check_throttle(context):
    """The failed-login counters (Redis or the ``login_failures`` table) can be read."""
    throttle = context.settings.throttle
    if not throttle.enabled or not context.settings.serves_accounts:
        return None
    if throttle.redis_url:
        from syncserver.throttle.redis_store import RedisCounterStore

        store, where = RedisCounterStore.from_url(throttle.redis_url), throttle.redis_url
    else:
        from syncserver.throttle.sql_store import SQLCounterStore

        store, where = SQLCounterStore.from_settings(throttle, None), throttle.sqluri
    try:
        store.read(["syncserver-admin-check"], int(time.time()))
    finally:
        store.close()
    return CheckResult("throttle", True, f"counters readable ({redact_url(where)})")


def check_tokenserver(context):
    """The Sync 1.5 users (``tokenserver.sqluri``) can be read, when the tokenserver is on."""
    tokenserver = context.settings.tokenserver
    if not tokenserver.enabled:
        return None
    count = context.token_users.count_accounts()
    return CheckResult("tokenserver", True,
                       f"{count} Sync 1.5 user(s){_where(tokenserver.sqluri)}")


def check_accounts_server(context):
    """The accounts server's signing keys can be fetched now and hold an RSA key (or are pinned)."""
    if not context.settings.tokenserver.enabled:
        return None
    return CheckResult("accounts_server", True, context.oauth_verifier.check())


#: Run in this order.
CHECKS = (check_configuration, check_storage, check_auth, check_schema, check_cache,
          check_directory, check_smtp, check_nodes, check_throttle, check_tokenserver,
          check_accounts_server)


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


def _is_backend(backend, module_name, class_name):
    """True when ``backend`` is (a subclass of) ``module_name.class_name``.

    Without importing the module: a class from it exists only if the
    settings imported it, and its driver (redis, ldap) may not be installed.
    """
    module = sys.modules.get(module_name)
    return module is not None and issubclass(backend, getattr(module, class_name))


def _backend_name(section):
    backend = section.backend
    return f"{backend.__module__}.{backend.__qualname__}"


def _where(url):
    return f" ({redact_url(url)})" if url else ""
