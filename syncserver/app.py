"""The composition root: everything the server runs, built from its settings, in one place.

:func:`make_app` is the PasteDeploy app factory (``use = egg:syncserver``).
:func:`build_components` builds the backends every entry point shares (the
server, ``syncserver-admin``): one :class:`~syncserver.db.Database` per SQL
URL handed to every backend configured with it, the configured auth backend
behind :class:`~syncserver.auth.cached.CachedAuth`, and, once all are built,
each database's schema created or checked (:func:`prepare_schemas`).
:func:`build_app` adds the web layer and the controllers around them and
returns the :class:`~syncserver.web.dispatcher.SyncServerApp`.

Nothing else in the package decides what to build from settings: backends
receive what they need, controllers receive backends.
"""

import dataclasses
import logging

from syncserver import metrics, migrations, plugins
from syncserver.accounts.mail import Mailer
from syncserver.accounts.password_reset import NoThrottle, PasswordReset
from syncserver.accounts.reset_codes import ResetCodeStore
from syncserver.auth import AuthBackend
from syncserver.auth.cached import CachedAuth
from syncserver.auth.credential_changes import ChangeFeed
from syncserver.auth.credentials_cache import CredentialsCache
from syncserver.controllers.misc import MiscController
from syncserver.controllers.pages import PagesController
from syncserver.controllers.storage import StorageController
from syncserver.controllers.storage15 import Storage15Controller
from syncserver.controllers.tokenserver import TokenserverController
from syncserver.controllers.user import UserController
from syncserver.db import DatabaseRegistry
from syncserver.errors import BackendUnavailable, ConfigError
from syncserver.health import HEARTBEAT_TIMEOUT_SECONDS, SMTP_CHECK_SECONDS, Dependency, Heartbeat
from syncserver.logsetup import ensure_logging
from syncserver.nodes import NodeBackend
from syncserver.settings import parse_settings
from syncserver.settings.databases import redact_url, unavailable_sentence
from syncserver.settings.generated_secret import with_master_secret
from syncserver.storage import StorageBackend
from syncserver.throttle.login import (
    DELETE_ACCOUNT,
    RESET_CODE,
    GuessThrottle,
    LoginThrottle,
    ResetMailLimit,
)
from syncserver.tokenserver.oauth import OAuthVerifier
from syncserver.tokenserver.policy import AccessPolicy
from syncserver.tokenserver.users import TokenUserBackend
from syncserver.tokenserver.users_sql import SQLTokenUsers
from syncserver.web.access_log import AccessLogMiddleware
from syncserver.web.cors import CORSPolicy
from syncserver.web.dispatcher import SyncServerApp
from syncserver.web.metrics_endpoint import MetricsEndpoint
from syncserver.web.node_guard import NodeGuard
from syncserver.web.nonces import MemoryNonceCache, RedisNonceCache
from syncserver.web.sync15_auth import Sync15Authenticator

logger = logging.getLogger("syncserver")


def make_app(global_conf=None, **settings):
    """PasteDeploy app factory (``use = egg:syncserver``): settings are the ``[app:main]`` keys.

    A configuration error or a database that cannot be set up stops the
    server with one sentence instead of a traceback. With
    ``logging.access_log`` on, the app is wrapped in the access log. An ini
    without logging sections still logs (:mod:`syncserver.logsetup`).
    """
    ensure_logging()
    here = (global_conf or {}).get("here")
    try:
        app = build_app(settings, here=here)
    except ConfigError as error:
        raise SystemExit(f"syncserver: configuration error: {error}") from None
    except BackendUnavailable as error:
        reason = unavailable_sentence(error, parse_settings(settings))
        raise SystemExit(f"syncserver: cannot start: {reason}") from None
    if app.settings.logging.access_log:
        return AccessLogMiddleware(app, app.settings.logging.access_format,
                                   app.settings.global_.trusted_proxies)
    return app


@dataclasses.dataclass
class Components:
    """The backends of one process, as :func:`build_components` made them.

    Optional ones are None when not configured: ``nodes`` (no node list),
    ``reset_codes``/``mailer``/``password_reset`` (no ``smtp.host``),
    ``captcha`` (``captcha.use`` false), ``login_throttle`` (throttling off),
    ``token_users``/``oauth_verifier`` (``tokenserver.enabled`` false).
    """

    settings: object
    databases: DatabaseRegistry
    storage: StorageBackend = None
    auth: AuthBackend = None
    nodes: NodeBackend = None
    reset_codes: ResetCodeStore = None
    mailer: Mailer = None
    password_reset: PasswordReset = None
    captcha: object = None
    login_throttle: LoginThrottle = None
    token_users: TokenUserBackend = None
    oauth_verifier: OAuthVerifier = None

    def close(self):
        """Close every backend, then the shared databases."""
        for backend in (self.storage, self.auth, self.nodes, self.reset_codes, self.captcha,
                        self.login_throttle, self.token_users):
            if backend is not None:
                backend.close()
        self.databases.close()


def build_app(raw_settings, here=None):
    """The WSGI application for ``[app:main]`` keys; raises :class:`ConfigError`.

    ``here`` is the ini file's folder (where a generated master secret is kept).
    """
    settings = with_master_secret(parse_settings(raw_settings), here)
    components = build_components(settings)
    try:
        return _assemble(settings, components)
    except BaseException:
        components.close()
        raise


def build_components(settings, *, credentials_cache_seconds=None, allow_new_users=None,
                     create_tables=None):
    """Every backend the settings name, sharing one database per URL, schemas prepared.

    The keyword arguments override settings for tools: ``syncserver-admin``
    remembers no logins, may add accounts when registration is closed, and
    never creates tables (``db upgrade`` does). Raises :class:`ConfigError`
    (a closing everything built so far).
    """
    if allow_new_users is not None:
        settings = dataclasses.replace(settings, auth=dataclasses.replace(
            settings.auth, allow_new_users=allow_new_users))
    if create_tables is not None:
        settings = with_create_tables(settings, create_tables)
    databases = declare_databases(settings)
    components = Components(settings, databases)
    try:
        if settings.serves_storage:
            components.storage = plugins.open_backend(
                StorageBackend, settings.storage.backend, settings.storage, databases)
        if settings.nodes.in_use:
            components.nodes = plugins.open_backend(
                NodeBackend, settings.nodes.backend, settings.nodes, databases)
        if settings.serves_accounts:
            _build_accounts(settings, components, databases, credentials_cache_seconds)
        if settings.tokenserver.enabled:
            components.token_users = SQLTokenUsers.open(
                settings.tokenserver, databases, self_is_node=tokens_name_this_server(settings))
            # Reads a pinned JWKS now; fetches nothing before the first token request.
            components.oauth_verifier = OAuthVerifier(settings.tokenserver.oauth_settings())
        prepare_schemas(databases)
    except BaseException:
        components.close()
        raise
    return components


def _build_accounts(settings, components, databases, credentials_cache_seconds):
    """Sync 1.1's accounts and what serves them: auth, password reset, captcha, throttle."""
    components.auth = cached_auth(
        plugins.open_backend(AuthBackend, settings.auth.backend, settings.auth, databases),
        settings.auth, databases, credentials_cache_seconds)
    if settings.smtp.host:
        components.reset_codes = ResetCodeStore.from_settings(settings.reset, databases)
        components.mailer = Mailer(settings.smtp)
    if settings.captcha.use:
        components.captcha = settings.captcha.backend.from_settings(settings.captcha)
    components.login_throttle = LoginThrottle.from_settings(settings.throttle, databases)
    if components.reset_codes is not None:
        throttle = components.login_throttle
        components.password_reset = PasswordReset(
            components.auth, components.reset_codes, components.mailer,
            _guesses(throttle, RESET_CODE),
            ResetMailLimit(throttle.throttle) if throttle else None)
        if not settings.global_.public_url and not settings.global_.allowed_hosts:
            logger.warning("password reset will refuse to mail links until "
                           "global.public_url (or global.allowed_hosts) is set")


def tokens_name_this_server(settings):
    """True when a token may name this process as the node (an empty node list).

    It can when this process keeps records, or ``tokenserver.node_url``
    names the one storage node; a tokenserver-only process without it needs
    a node list (it answers 503 while the list is empty).
    """
    return settings.serves_storage or bool(settings.tokenserver.node_url)


def declare_databases(settings):
    """A :class:`DatabaseRegistry` knowing the pool options of every SQL URL of ``settings``.

    Backends on one URL share its pool: the largest pool any of them asks
    for, and the timeouts of the first section naming it (storage first).
    """
    databases = DatabaseRegistry()
    sections = []
    if settings.serves_storage:
        sections.append(settings.storage)
    if settings.serves_accounts:
        sections.append(settings.auth)
    if settings.nodes.in_use:
        sections.append(settings.nodes)
    if settings.tokenserver.enabled:
        sections.append(settings.tokenserver)
    for section in sections:
        if section.sqluri:
            options = dict(pool_size=section.pool_size, pool_timeout=section.pool_timeout,
                           pool_recycle=section.pool_recycle)
            for name in ("connect_timeout", "query_timeout"):
                if hasattr(section, name):
                    options[name] = getattr(section, name)
            databases.declare(section.sqluri, **options)
    return databases


def prepare_schemas(databases):
    """Create or upgrade (a ``create_tables`` key on) or check each database's schema.

    A database that is down passes the check: the server starts and answers
    503 until it comes back.
    """
    for use in databases.uses():
        if use.prepared_keys == use.keys:
            continue
        if use.create_tables:
            try:
                migrations.ensure_schema(use.database)
            except BackendUnavailable as error:
                # Name the setting and the URL (password hidden): "database unavailable" alone
                # does not say which of several databases, nor where it was looked for.
                reason = str(error).removeprefix("database unavailable: ")
                raise BackendUnavailable(
                    f"the database of {use.keys[0]} ({redact_url(use.database.url)}) is "
                    f"unavailable: {reason}") from error
        else:
            migrations.check_schema(use.database, use.keys[0].rsplit(".", 1)[0]
                                    + ".create_tables")
        use.prepared_keys = list(use.keys)


def cached_auth(backend, settings, databases, cache_seconds=None):
    """``backend`` behind :class:`CachedAuth`: logins remembered, changes announced everywhere."""
    seconds = settings.credentials_cache_seconds if cache_seconds is None else cache_seconds
    cache = CredentialsCache(seconds, settings.credentials_cache_secret or None)
    feed = versions = None
    if settings.sqluri:
        feed = ChangeFeed(databases.database(settings.sqluri, "auth.sqluri",
                                             settings.create_tables),
                          seconds, poll_seconds=settings.changes_poll_seconds)
    if settings.redis_url:
        try:
            from syncserver.auth.credential_versions import CredentialVersions

            versions = CredentialVersions.from_url(settings.redis_url, seconds)
        except ImportError as error:
            raise ConfigError(f"auth.redis_url needs redis-py: pip install "
                              f"'syncserver[redis]' ({error}).") from None
        except ValueError as error:
            raise ConfigError(f"auth.redis_url is not a usable Redis URL: {error}") from None
    return CachedAuth(backend, cache, versions=versions, feed=feed)


def _assemble(settings, components):
    """The web layer and the controllers around ready components."""
    node_guard = None
    if components.nodes is not None and settings.nodes.this_node:
        node_guard = NodeGuard(
            components.nodes, settings.nodes.this_node, check_node=settings.auth.check_node,
            cache_seconds=settings.nodes.cache_seconds,
            retry_after=settings.global_.retry_after)
    heartbeat = Heartbeat(_dependencies(components))
    recorder = endpoint = None
    if settings.metrics.enabled:
        from syncserver.metrics.prometheus import PrometheusRecorder

        recorder = PrometheusRecorder()
        endpoint = MetricsEndpoint(recorder, settings.metrics)
        metrics.install(recorder)
    storage, auth, throttle = components.storage, components.auth, components.login_throttle
    hawk = cors = None
    controllers = {}
    if settings.storage15.enabled:
        hawk = sync15_authenticator(settings)
        cors = CORSPolicy(settings.storage15.cors_origins)
        controllers["storage15"] = Storage15Controller(storage, settings, cors=cors)
    if settings.sync11.enabled:
        controllers.update({
            "storage": StorageController(storage, settings.storage),
            "user": UserController(auth, storage, settings, nodes=components.nodes,
                                   password_reset=components.password_reset,
                                   captcha=components.captcha, throttle=throttle),
            "pages": PagesController(auth, storage, settings, components.password_reset,
                                     _guesses(throttle, DELETE_ACCOUNT), nodes=components.nodes),
        })
    controllers["misc"] = MiscController(heartbeat, captcha=components.captcha,
                                         serves=settings.serves)
    if components.token_users is not None:
        controllers["tokenserver"] = TokenserverController(
            components.oauth_verifier, components.token_users,
            AccessPolicy.from_settings(settings.tokenserver), settings,
            node_type=settings.tokenserver.node_type or (
                _database_kind(settings.storage.sqluri) if settings.serves_storage else None))
    return SyncServerApp(settings, components, controllers, node_guard=node_guard,
                         heartbeat=heartbeat, metrics_recorder=recorder,
                         metrics_endpoint=endpoint, hawk=hawk, cors=cors)


def sync15_authenticator(settings):
    """Hawk for the 1.5 API: the master secrets, and nonces in Redis or in this process."""
    storage15 = settings.storage15
    window = storage15.hawk_skew_seconds
    if window < 1:
        raise ConfigError("storage15.hawk_skew_seconds must be at least 1.")
    if storage15.redis_url:
        try:
            nonce_cache = RedisNonceCache.from_url(storage15.redis_url, window=window)
        except ImportError as error:
            raise ConfigError(f"storage15.redis_url needs redis-py: pip install "
                              f"'syncserver[redis]' ({error}).") from None
        except ValueError as error:
            raise ConfigError(f"storage15.redis_url is not a usable Redis URL: {error}") from None
    else:
        nonce_cache = MemoryNonceCache(window=window)
    return Sync15Authenticator(
        settings.global_.master_secret, nonce_cache, settings.global_, window,
        storage15.expired_token_seconds, settings.storage.max_request_bytes)


def _dependencies(components):
    """What the heartbeat checks: every service configured (see :mod:`syncserver.health`)."""
    storage, auth, mailer = components.storage, components.auth, components.mailer
    dependencies = []
    if storage is not None:
        dependencies.append(Dependency("storage", storage.is_healthy))
        dependencies += [Dependency(name, check, critical=False)
                         for name, check in storage.optional_dependencies().items()]
    if auth is not None:
        dependencies.append(Dependency("auth", auth.is_healthy))
        dependencies += [Dependency(name, check, critical=False)
                         for name, check in auth.optional_dependencies().items()]
    if components.nodes is not None:
        dependencies.append(Dependency("nodes", components.nodes.is_healthy))
    if components.reset_codes is not None:
        dependencies.append(Dependency("reset_codes", components.reset_codes.is_healthy,
                                       critical=False))
    if mailer is not None:
        dependencies.append(Dependency(
            "smtp", lambda: mailer.is_healthy(timeout=HEARTBEAT_TIMEOUT_SECONDS),
            critical=False, max_age=SMTP_CHECK_SECONDS))
    if components.login_throttle is not None:
        dependencies.append(Dependency("throttle", components.login_throttle.is_healthy,
                                       critical=False))
    if components.token_users is not None:
        dependencies.append(Dependency("tokenserver", components.token_users.is_healthy))
    return dependencies


def _database_kind(url):
    """``sqlite``, ``mysql`` or ``postgresql`` for a SQL URL (the default ``node_type``)."""
    if not url:
        return None
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).get_backend_name()
    except sqlalchemy.exc.ArgumentError:
        return None


def _guesses(login_throttle, scope):
    """The reset flows' view of one throttle scope; allows everything when throttling is off."""
    return GuessThrottle(login_throttle.throttle, scope) if login_throttle else NoThrottle()


def with_create_tables(settings, create_tables):
    """``settings`` with every section's ``create_tables`` set to ``create_tables``."""
    changes = {name: dataclasses.replace(getattr(settings, name), create_tables=create_tables)
               for name in ("storage", "auth", "nodes", "reset", "throttle", "tokenserver")}
    return dataclasses.replace(settings, **changes)
