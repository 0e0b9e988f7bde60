"""The sections of the ``[app:main]`` keys: one frozen dataclass each.

A field's name is the key after the section's dot (``storage.sqluri`` is
:attr:`StorageSettings.sqluri`); its type says how the text is converted
(:func:`syncserver.settings.values.convert`) unless its metadata names a
``parse`` function. docs/configuration.rst documents every field, and
tests/test_docs.py keeps the two in step.
"""

import dataclasses
import ipaddress
from collections.abc import Mapping

from syncserver.settings.values import parse_choice, parse_hosts, parse_networks, parse_words
from syncserver.tokenserver.fxa_client import DEFAULT_SERVER_URL
from syncserver.tokenserver.oauth import OAuthSettings

ACCESS_LOG_FORMATS = ("combined", "json")


@dataclasses.dataclass(frozen=True)
class StorageSettings:
    """``storage.*``: where and how records are kept, and the protocol limits."""

    backend: type
    sqluri: str | None = None
    create_tables: bool = False
    #: Per-user quota in KB; 0 turns quotas off.
    quota_size: int = 0
    batch_max_count: int = 100
    batch_max_bytes: int = 1024 * 1024
    max_payload_bytes: int = 256 * 1024
    #: Largest request body accepted at all (413 beyond); Sync 1.5 clients are told it.
    max_request_bytes: int = 16 * 1024 * 1024
    #: Sync 1.5: records one POST may carry (more are answered "retry bso").
    max_post_records: int = 100
    #: Sync 1.5: payload bytes one POST may carry (beyond: "retry bytes").
    max_post_bytes: int = 2 * 1024 * 1024
    #: Sync 1.5: records one batch upload may hold, all its POSTs together.
    max_total_records: int = 10_000
    #: Sync 1.5: payload bytes one batch upload may hold.
    max_total_bytes: int = 200 * 1024 * 1024
    #: Sync 1.5: bytes one record's payload may have (UTF-8).
    max_record_payload_bytes: int = 2 * 1024 * 1024
    #: Sync 1.5: seconds a batch upload stays open before it expires (and is purged).
    batch_lifetime_seconds: int = 7200
    pool_size: int = 10
    pool_timeout: int = 30
    pool_recycle: int = 3600
    #: The backend a wrapper (``redis``) keeps the data in; a class, like ``backend``.
    wrapped_backend: type | None = None
    #: Seconds to open a database connection before answering 503 (MySQL, PostgreSQL).
    connect_timeout: int = 10
    #: Seconds one statement may take before it is abandoned with a 503 (MySQL, PostgreSQL).
    query_timeout: int = 30
    #: The backend's own keys: an instance of its ``settings_class`` (None without one).
    backend_settings: object = None
    #: The same for ``wrapped_backend``.
    wrapped_backend_settings: object = None
    #: Every ``storage.*`` key as written (prefix stripped), for plugins' ``extra_settings``.
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class AuthSettings:
    """``auth.*``: who may use the server and how credentials are checked."""

    backend: type
    sqluri: str | None = None
    create_tables: bool = False
    allow_new_users: bool = True
    #: The username must be the Sync hash of the e-mail address (error 15 otherwise).
    strict_usernames: bool = True
    #: How long verified credentials are remembered (0 turns the cache off).
    credentials_cache_seconds: int = 300
    #: Key of the credentials cache HMAC; random per process when empty.
    credentials_cache_secret: str = ""
    #: Storage requests of users assigned to another node get 401 (needs nodes.this_node).
    check_node: bool = False
    pool_size: int = 10
    pool_timeout: int = 30
    pool_recycle: int = 3600
    #: Redis that tells every process at once that a user's credentials changed.
    redis_url: str | None = None
    #: How often (seconds) each process reads the SQL feed of credential changes.
    changes_poll_seconds: float = 1.0
    #: Seconds to open a database connection before answering 503 (MySQL, PostgreSQL).
    connect_timeout: int = 10
    #: Seconds one statement may take before it is abandoned with a 503 (MySQL, PostgreSQL).
    query_timeout: int = 30
    #: The backend's own keys: an instance of its ``settings_class`` (None without one).
    backend_settings: object = None
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class NodeSettings:
    """``nodes.*``: which storage node the User API hands to clients (see docs/nodes.rst)."""

    backend: type | None = None
    #: Node URL given to every user when assignment is off; None means "this
    #: server, as the client reached it".
    fallback_node: str | None = None
    #: node/weave assigns each user a node from the node list (null when none can be).
    assignment: bool = False
    #: This server's URL as the node list holds it: its downed/backoff flags apply here.
    this_node: str | None = None
    #: How long a process trusts the node's flags and "user assigned here" (seconds).
    cache_seconds: int = 5
    sqluri: str | None = None
    create_tables: bool = False
    pool_size: int = 5
    pool_timeout: int = 30
    pool_recycle: int = 3600
    #: The backend's own keys: an instance of its ``settings_class`` (None without one).
    backend_settings: object = None
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def in_use(self):
        """True when this server reads the node list (assigning, or serving as a node)."""
        return self.assignment or self.this_node is not None


@dataclasses.dataclass(frozen=True)
class GlobalSettings:
    """``global.*``: server-wide behaviour."""

    #: ``X-Weave-Secret`` equal to this bypasses the captcha on registration.
    shared_secret: str | None = None
    #: Seconds sent in ``Retry-After`` with a 503.
    retry_after: int = 1800
    #: The URL clients reach the server at (scheme, host, prefix); None: from the request.
    public_url: str | None = None
    #: Without public_url: the hosts a request may name for a link that is mailed (reset).
    allowed_hosts: tuple = dataclasses.field(
        default=(), metadata={"parse": lambda key, value: parse_hosts(key, value)})
    #: Proxies (addresses or networks) whose X-Forwarded-* headers are believed; none by default.
    trusted_proxies: tuple = dataclasses.field(
        default=(), metadata={"parse": lambda key, value: parse_networks(key, value)})
    #: Secrets signing Sync 1.5 tokens, separated by spaces: the first signs, all
    #: verify. Empty: generated once under ``var/`` next to the ini file.
    master_secret: tuple = dataclasses.field(
        default=(), metadata={"parse": lambda key, value: parse_words(key, value)})


@dataclasses.dataclass(frozen=True)
class Sync11Settings:
    """``sync11.*``: the Sync 1.1 APIs of older Firefox (storage, User API, account pages)."""

    #: Serve Sync 1.1; false for a process that is only a tokenserver or a 1.5 storage node.
    enabled: bool = True


@dataclasses.dataclass(frozen=True)
class Storage15Settings:
    """``storage15.*``: the Storage API 1.5 of current Firefox (``/1.5/<uid>/...``, Hawk)."""

    #: Serve the 1.5 API (beside 1.1, on the same databases).
    enabled: bool = False
    #: Seconds a request's Hawk timestamp may differ from the server's clock.
    hawk_skew_seconds: int = 900
    #: Seconds past its expiry a token may still read ``info/collections``.
    expired_token_seconds: int = 7200
    #: Redis remembering Hawk nonces for every process (default: ``auth.redis_url``;
    #: none: each process remembers its own).
    redis_url: str | None = None
    #: Origins (``https://app.example.org``) whose web pages may call the API (CORS).
    cors_origins: tuple = dataclasses.field(
        default=(), metadata={"parse": lambda key, value: parse_words(key, value)})


@dataclasses.dataclass(frozen=True)
class TokenserverSettings:
    """``tokenserver.*``: the Sync 1.5 tokenserver of current Firefox (``/1.0/sync/1.5``)."""

    #: Serve the tokenserver (Mozilla-account sign-in for current Firefox).
    enabled: bool = False
    #: The Mozilla accounts OAuth server (its JWKS and verify endpoints are under it).
    oauth_server_url: str = DEFAULT_SERVER_URL
    #: Pinned signing keys (a JWKS as JSON text, or a file path); empty fetches them.
    oauth_jwks: str | None = None
    #: Seconds fetched signing keys are trusted before they are fetched again.
    oauth_jwks_cache_seconds: float = 3600.0
    #: Least seconds between two fetches of the signing keys (unknown key ids, outages).
    oauth_jwks_refetch_seconds: float = 30.0
    #: Seconds to wait for the accounts server before answering 503.
    oauth_timeout: float = 5.0
    #: PEM file of the CAs trusted for ``oauth_server_url``; empty: the system's.
    oauth_ca_file: str | None = None
    #: Seconds of clock disagreement tolerated on an access token's expiry.
    oauth_leeway_seconds: float = 5.0
    #: The only ``iss`` accepted in access tokens; empty accepts any.
    oauth_issuer: str | None = None
    #: Ask the accounts server about tokens that cannot be checked here (opaque ones).
    oauth_remote_verify: bool = True
    #: Let accounts that never had a token here start using the server.
    allow_new_users: bool = True
    #: Mozilla-account ids (JWT ``sub``) allowed to sync here; empty allows every account.
    allowed_fxa_uids: tuple = dataclasses.field(
        default=(), metadata={"parse": lambda key, value: parse_words(key, value)})
    #: Most accounts that may sync here; 0 for no limit.
    max_users: int = 0
    #: Seconds a token is valid (a client may ask for less with ``?duration=``).
    duration: int = 3600
    #: This server's storage URL for tokens when the node list is empty; empty: as reached.
    node_url: str | None = None
    #: The ``node_type`` label of token responses; empty: the storage database's kind.
    node_type: str | None = None
    #: Key of the ``hashed_fxa_uid`` / ``hashed_device_id`` HMACs; empty: from the master secret.
    metrics_secret: str | None = None
    #: Seconds a replaced uid's storage is kept before ``purge-expired`` deletes it (1 day).
    replaced_grace_seconds: int = 86400
    #: Database of the Sync 1.5 users; defaults to ``nodes.sqluri`` (it refers to the nodes).
    sqluri: str | None = None
    create_tables: bool = False
    pool_size: int = 5
    pool_timeout: int = 30
    pool_recycle: int = 3600
    #: Seconds to open a database connection before answering 503 (MySQL, PostgreSQL).
    connect_timeout: int = 10
    #: Seconds one statement may take before it is abandoned with a 503 (MySQL, PostgreSQL).
    query_timeout: int = 30

    def oauth_settings(self):
        """The verifier's :class:`~syncserver.tokenserver.oauth.OAuthSettings` (checks them)."""
        return OAuthSettings(
            server_url=self.oauth_server_url, jwks=self.oauth_jwks,
            jwks_cache_seconds=self.oauth_jwks_cache_seconds,
            jwks_refetch_seconds=self.oauth_jwks_refetch_seconds, timeout=self.oauth_timeout,
            ca_file=self.oauth_ca_file, leeway_seconds=self.oauth_leeway_seconds,
            issuer=self.oauth_issuer, remote_verify=self.oauth_remote_verify)


@dataclasses.dataclass(frozen=True)
class LoggingSettings:
    """``logging.*``: the access log (the rest of logging is the ini's logging sections)."""

    #: One line per request on the ``syncserver.access`` logger.
    access_log: bool = False
    #: ``combined`` (Apache's combined format plus milliseconds) or ``json`` (one object a line).
    access_format: str = dataclasses.field(
        default="combined", metadata={"parse": lambda key, value: parse_choice(
            key, value, ACCESS_LOG_FORMATS)})


#: Who may read the metrics unless ``metrics.allowed_addresses`` says otherwise: this host.
LOCAL_NETWORKS = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))


@dataclasses.dataclass(frozen=True)
class MetricsSettings:
    """``metrics.*``: the Prometheus metrics page (off by default; see docs/monitoring.rst)."""

    enabled: bool = False
    #: Where the page is served; anyone not allowed gets a 404 there.
    path: str = "/__metrics__"
    #: Client addresses or networks allowed to read the page (as trusted proxies report them).
    allowed_addresses: tuple = dataclasses.field(
        default=LOCAL_NETWORKS, metadata={"parse": lambda key, value: parse_networks(key, value)})
    #: When set, readers must also send ``Authorization: Bearer <token>``.
    token: str | None = None


@dataclasses.dataclass(frozen=True)
class SMTPSettings:
    """``smtp.*``: the mail server that carries password-reset links.

    Without ``host`` password reset is off (its routes answer 503).
    """

    host: str | None = None
    #: 25 for plain SMTP or STARTTLS, 465 with ``ssl``, 587 for submission.
    port: int = 25
    #: The From address of the mail; required with ``host``.
    sender: str | None = None
    user: str | None = None
    password: str | None = None
    #: Upgrade the connection with STARTTLS before sending (refuse to send if it fails).
    starttls: bool = False
    #: Speak TLS from the first byte (SMTPS, usually port 465).
    ssl: bool = False
    #: Seconds to wait on the mail server before answering 503.
    timeout: int = 10
    #: PEM file of the certificate authorities to trust instead of the system's.
    ca_file: str | None = None


@dataclasses.dataclass(frozen=True)
class ResetSettings:
    """``reset.*``: where password-reset codes are kept and how long they live."""

    #: Database of the reset codes; defaults to ``auth.sqluri``, then ``storage.sqluri``.
    sqluri: str | None = None
    create_tables: bool = False
    #: Seconds a reset link works (6 hours, as the mail says).
    code_lifetime_seconds: int = 21600


@dataclasses.dataclass(frozen=True)
class PagesSettings:
    """``pages.*``: the HTML pages (password reset, delete account)."""

    #: Key that signs the forms' anti-CSRF tokens; see docs/configuration.rst.
    csrf_secret: str | None = None


@dataclasses.dataclass(frozen=True)
class CaptchaSettings:
    """``captcha.*``: the captcha asked for at registration (off by default)."""

    backend: type
    use: bool = False
    #: The provider's site key (shown in the widget) and secret key (sent when verifying).
    public_key: str | None = None
    private_key: str | None = None
    #: The provider's verification endpoint; None means the provider's own.
    verify_url: str | None = None
    #: Seconds to wait for the provider before answering 503.
    timeout: int = 5
    #: PEM file of the CAs trusted for ``verify_url``; None means the system's.
    ca_file: str | None = None
    #: The backend's own keys: an instance of its ``settings_class`` (None without one).
    backend_settings: object = None
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ThrottleSettings:
    """``throttle.*``: refusing repeated failed logins (see :mod:`syncserver.throttle.login`)."""

    enabled: bool = True
    #: Counters in Redis when set, else in the ``login_failures`` table at ``sqluri``.
    redis_url: str | None = None
    sqluri: str | None = None
    create_tables: bool = False
    #: A counter is forgotten this long after its last failure.
    window_seconds: int = 900
    #: Failures of one account from one address before each retry must wait 1, 2, 4 ... s.
    delay_after: int = 5
    max_delay_seconds: int = 30
    #: Failures of one account from one address before a lockout.
    max_failures: int = 10
    lockout_seconds: int = 600
    #: Failures from one address, any account, before a lockout of that address.
    address_max_failures: int = 50
    #: Addresses never locked out as a whole (the per-address counter); loopback by default.
    address_exempt: tuple = dataclasses.field(
        default=LOCAL_NETWORKS, metadata={"parse": lambda key, value: parse_networks(key, value)})
    #: Failures of one account, any address, before a short lockout of untrusted addresses.
    account_max_failures: int = 50
    account_lockout_seconds: int = 60
    #: An address where the account logged in stays exempt from the account lockout this long.
    trusted_seconds: int = 30 * 24 * 3600
    #: Wrong password-reset codes for one account before a lockout.
    reset_code_max_failures: int = 5
    #: Reset-link mails to one account: at most one per this many seconds...
    reset_mail_interval_seconds: int = 60
    #: ... and at most this many per hour.
    reset_mail_max_per_hour: int = 5
    #: How long a process trusts its copy of a counter before reading the store again.
    cache_seconds: int = 2


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every section, as :func:`parse_settings` built them."""

    storage: StorageSettings
    auth: AuthSettings
    nodes: NodeSettings
    global_: GlobalSettings
    smtp: SMTPSettings
    reset: ResetSettings
    pages: PagesSettings
    captcha: CaptchaSettings
    throttle: ThrottleSettings
    logging: LoggingSettings
    metrics: MetricsSettings
    storage15: Storage15Settings = Storage15Settings()
    tokenserver: TokenserverSettings = TokenserverSettings()
    sync11: Sync11Settings = Sync11Settings()

    @property
    def serves(self):
        """The APIs this process serves, of ``("sync11", "storage15", "tokenserver")``.

        A process's *shape* (docs/deploying.rst): all three (one server), a
        tokenserver only, or a Sync 1.5 storage node only.
        """
        return tuple(name for name, on in (
            ("sync11", self.sync11.enabled), ("storage15", self.storage15.enabled),
            ("tokenserver", self.tokenserver.enabled)) if on)

    @property
    def serves_storage(self):
        """True when this process keeps records (Sync 1.1 or 1.5): it needs ``storage.*``."""
        return self.sync11.enabled or self.storage15.enabled

    @property
    def serves_accounts(self):
        """True when this process has Sync 1.1 accounts: ``auth.*``, reset, captcha, throttle."""
        return self.sync11.enabled

    def sql_url_settings(self):
        """``[(key, url)]`` of every SQL URL this configuration uses, storage's first."""
        named = []
        if self.serves_storage:
            named.append(("storage.sqluri", self.storage.sqluri))
        if self.serves_accounts:
            named.append(("auth.sqluri", self.auth.sqluri))
        if self.nodes.in_use:
            named.append(("nodes.sqluri", self.nodes.sqluri))
        if self.serves_accounts and self.smtp.host:
            named.append(("reset.sqluri", self.reset.sqluri))
        if self.serves_accounts and self.throttle.enabled and not self.throttle.redis_url:
            named.append(("throttle.sqluri", self.throttle.sqluri))
        if self.tokenserver.enabled:
            named.append(("tokenserver.sqluri", self.tokenserver.sqluri))
        return [(key, url) for key, url in named if url]

    def sql_urls(self):
        """Every SQL database this configuration uses, once each, storage's first."""
        urls = []
        for _, url in self.sql_url_settings():
            if url not in urls:
                urls.append(url)
        return urls


#: The fields of a section that are not keys of their own.
NOT_KEYS = frozenset({"backend_settings", "wrapped_backend_settings", "options"})

_SECTIONS = {
    "storage": StorageSettings,
    "auth": AuthSettings,
    "nodes": NodeSettings,
    "global": GlobalSettings,
    "smtp": SMTPSettings,
    "reset": ResetSettings,
    "pages": PagesSettings,
    "captcha": CaptchaSettings,
    "throttle": ThrottleSettings,
    "logging": LoggingSettings,
    "metrics": MetricsSettings,
    "storage15": Storage15Settings,
    "tokenserver": TokenserverSettings,
    "sync11": Sync11Settings,
}
