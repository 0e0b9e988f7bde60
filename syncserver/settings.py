"""Settings: the ``[app:main]`` keys, parsed once into typed objects.

Every key is dotted, ``section.option`` (``storage.sqluri``). Each section
becomes one frozen dataclass; controllers and backends receive the one they
need, never the raw mapping. A misspelt key, a bad value or a missing
required key raises :class:`ConfigError` with one sentence naming the key.
"""

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping

from syncserver.auth import AuthBackend
from syncserver.captcha import CaptchaBackend
from syncserver.errors import ConfigError
from syncserver.nodes import NodeBackend
from syncserver.plugins import resolve_backend
from syncserver.storage import StorageBackend

STORAGE_BACKENDS = {
    "sql": "syncserver.storage.sql.SQLStorage",
    "redis": "syncserver.storage.redis.RedisCachedStorage",
}
AUTH_BACKENDS = {"sql": "syncserver.auth.sql.SQLAuth", "ldap": "syncserver.auth.ldap.LDAPAuth"}
NODE_BACKENDS = {"sql": "syncserver.nodes.sql.SQLNodes"}
CAPTCHA_BACKENDS = {
    "recaptcha": "syncserver.captcha.recaptcha.ReCaptcha",
    "hcaptcha": "syncserver.captcha.hcaptcha.HCaptcha",
}

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0", ""}

#: ``${NAME}`` anywhere in a value reads the environment; ``$${`` writes a literal ``${``.
_ENVIRONMENT_REFERENCE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")

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
    #: Largest request body accepted at all (413 beyond).
    max_request_bytes: int = 16 * 1024 * 1024
    pool_size: int = 10
    pool_timeout: int = 30
    pool_recycle: int = 3600
    #: The backend a wrapper (``redis``) keeps the data in; a class, like ``backend``.
    wrapped_backend: type | None = None
    #: The Redis cache (``storage.backend = redis``).
    redis_url: str | None = None
    #: Seconds a Redis command may take before the request falls back to the database.
    redis_timeout: float = 1.0
    redis_key_prefix: str | None = "syncserver:"
    #: After a Redis failure: seconds before Redis is tried again (and between warnings).
    redis_retry_seconds: int = 10
    #: How long a user's cached answers live in Redis without being read or written.
    redis_cache_seconds: int = 86400
    #: Seconds to open a database connection before answering 503 (MySQL, PostgreSQL).
    connect_timeout: int = 10
    #: Seconds one statement may take before it is abandoned with a 503 (MySQL, PostgreSQL).
    query_timeout: int = 30
    #: Every ``storage.*`` key as written (prefix stripped), for plugins' own keys.
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
    # --- LDAP directory (auth.backend = ldap); see LDAP_KEYS -----------------
    #: ``ldap://host`` or ``ldaps://host``; several URIs separated by spaces fail over.
    ldapuri: str | None = None
    #: Upgrade ``ldap://`` connections with StartTLS (refused if the server cannot).
    ldap_starttls: bool = False
    #: PEM file of the CA that signed the directory's certificate (system CAs if empty).
    ldap_ca_file: str | None = None
    #: Service account that searches for users; anonymous when empty.
    bind_dn: str | None = None
    bind_password: str | None = None
    users_base_dn: str | None = None
    #: ``{username}`` is replaced by the escaped Sync username.
    user_filter: str = "(uid={username})"
    mail_attribute: str = "mail"
    #: An entry that does not also match this filter is a disabled account.
    enabled_filter: str | None = None
    #: Numeric attribute (``uidNumber``) used as the user id instead of the SQL id map.
    uid_number_attribute: str | None = None
    #: Seconds allowed to connect and for each directory operation.
    ldap_timeout: int = 5
    ldap_pool_size: int = 5
    #: Seconds after which a pooled service connection is closed and replaced.
    ldap_pool_lifetime: int = 600
    #: Account allowed to write users; empty keeps the directory read-only.
    admin_bind_dn: str | None = None
    admin_bind_password: str | None = None
    #: Where new accounts are created (``users_base_dn`` when empty).
    new_users_base_dn: str | None = None
    #: Attribute holding the Sync username in new entries (and their RDN).
    username_attribute: str = "uid"
    #: Space-separated object classes of new entries.
    new_user_object_classes: str = "inetOrgPerson"
    #: Seconds to open a database connection before answering 503 (MySQL, PostgreSQL).
    connect_timeout: int = 10
    #: Seconds one statement may take before it is abandoned with a 503 (MySQL, PostgreSQL).
    query_timeout: int = 30
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)


#: ``auth.*`` keys only the LDAP backend reads: refused with any other backend.
LDAP_KEYS = frozenset({
    "ldapuri", "ldap_starttls", "ldap_ca_file", "bind_dn", "bind_password", "users_base_dn",
    "user_filter", "mail_attribute", "enabled_filter", "uid_number_attribute", "ldap_timeout",
    "ldap_pool_size", "ldap_pool_lifetime", "admin_bind_dn", "admin_bind_password",
    "new_users_base_dn", "username_attribute", "new_user_object_classes",
})


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
    #: Proxies (addresses or networks) whose X-Forwarded-* headers are believed; none by default.
    trusted_proxies: tuple = dataclasses.field(
        default=(), metadata={"parse": lambda key, value: parse_networks(key, value)})


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
}


def parse_settings(raw):
    """Turn the ``[app:main]`` mapping into :class:`Settings`, or raise :class:`ConfigError`."""
    grouped = {section: {} for section in _SECTIONS}
    for key, value in raw.items():
        section, dot, option = key.partition(".")
        if not dot or not option:
            raise ConfigError(
                f"Unknown setting {key!r}: settings are dotted keys such as 'storage.sqluri'.")
        if section not in grouped:
            raise ConfigError(
                f"Unknown setting {key!r}: the known sections are {', '.join(sorted(_SECTIONS))}.")
        if isinstance(value, str):
            value = expand_environment(key, value.strip())
        grouped[section][option] = value

    storage_backend = resolve_backend("storage.backend", grouped["storage"].get("backend", "sql"),
                                      STORAGE_BACKENDS, StorageBackend)
    wrapped_name = grouped["storage"].get("wrapped_backend")
    wrapped_backend = resolve_backend("storage.wrapped_backend", wrapped_name, STORAGE_BACKENDS,
                                      StorageBackend) if wrapped_name else None
    auth_backend = resolve_backend(
        "auth.backend", grouped["auth"].get("backend", "sql"), AUTH_BACKENDS, AuthBackend)

    storage = _build("storage", StorageSettings, grouped["storage"],
                     (storage_backend, wrapped_backend), backend=storage_backend,
                     wrapped_backend=wrapped_backend, options=dict(grouped["storage"]))
    if not getattr(auth_backend, "reads_ldap_settings", False):
        for option in sorted(LDAP_KEYS & set(grouped["auth"])):
            raise ConfigError(
                f"auth.{option} is read only by the LDAP authentication backend "
                f"(auth.backend = ldap), not by {auth_backend.__name__}.")
    auth_defaults = {"sqluri": storage.sqluri, "create_tables": storage.create_tables}
    auth = _build("auth", AuthSettings, grouped["auth"], (auth_backend,),
                  defaults=auth_defaults, backend=auth_backend, options=dict(grouped["auth"]))
    nodes = _build_nodes(grouped["nodes"], auth)
    global_ = _build("global", GlobalSettings, grouped["global"])
    if global_.public_url:
        global_ = dataclasses.replace(global_, public_url=normalize_node_url(global_.public_url))
    logging_ = _build("logging", LoggingSettings, grouped["logging"])
    smtp = _check_smtp(_build("smtp", SMTPSettings, grouped["smtp"]))
    reset_defaults = {"sqluri": auth.sqluri or storage.sqluri,
                      "create_tables": auth.create_tables}
    reset = _build("reset", ResetSettings, grouped["reset"], defaults=reset_defaults)
    if reset.code_lifetime_seconds < 1:
        raise ConfigError("reset.code_lifetime_seconds must be at least 1.")
    pages = _build("pages", PagesSettings, grouped["pages"])
    captcha_backend = resolve_backend("captcha.backend",
                                      grouped["captcha"].get("backend", "recaptcha"),
                                      CAPTCHA_BACKENDS, CaptchaBackend)
    captcha = _build("captcha", CaptchaSettings, grouped["captcha"], captcha_backend,
                     backend=captcha_backend, options=dict(grouped["captcha"]))
    throttle = _build("throttle", ThrottleSettings, grouped["throttle"], defaults={
        "sqluri": auth.sqluri, "create_tables": auth.create_tables})
    _check_throttle(throttle)
    metrics = _check_metrics(_build("metrics", MetricsSettings, grouped["metrics"]))
    return Settings(storage=storage, auth=auth, nodes=nodes, global_=global_,
                    smtp=smtp, reset=reset, pages=pages, captcha=captcha, throttle=throttle,
                    logging=logging_, metrics=metrics)


def _check_metrics(metrics):
    """A path no request can have, or a missing prometheus_client, stops start-up."""
    if not metrics.path.startswith("/") or metrics.path.rstrip("/") == "":
        raise ConfigError(f"metrics.path must be a path such as /__metrics__, "
                          f"not {metrics.path!r}.")
    if metrics.enabled:
        try:
            import prometheus_client  # noqa: F401
        except ImportError as error:
            raise ConfigError(f"metrics.enabled = true needs prometheus_client: pip install "
                              f"'syncserver[metrics]' ({error}).") from None
    return metrics


def _check_smtp(smtp):
    """Refuse SMTP settings that could only fail at the first reset request."""
    if not smtp.host:
        return smtp
    if not smtp.sender:
        raise ConfigError("smtp.sender is required when smtp.host is set.")
    if smtp.ssl and smtp.starttls:
        raise ConfigError("smtp.ssl and smtp.starttls exclude each other: choose one.")
    if bool(smtp.user) != bool(smtp.password):
        raise ConfigError("smtp.user and smtp.password go together: set both or neither.")
    if smtp.timeout < 1:
        raise ConfigError("smtp.timeout must be at least 1 second.")
    if smtp.ca_file and not os.path.isfile(smtp.ca_file):
        raise ConfigError(f"smtp.ca_file names no readable file: {smtp.ca_file!r}.")
    return smtp


def _build_nodes(values, auth):
    backend = resolve_backend(
        "nodes.backend", values.get("backend", "sql"), NODE_BACKENDS, NodeBackend)
    defaults = {"sqluri": auth.sqluri, "create_tables": auth.create_tables}
    nodes = _build("nodes", NodeSettings, values, backend, defaults=defaults,
                   backend=backend, options=dict(values))
    urls = {name: normalize_node_url(getattr(nodes, name))
            for name in ("fallback_node", "this_node") if getattr(nodes, name)}
    nodes = dataclasses.replace(nodes, **urls)
    if nodes.assignment and nodes.fallback_node:
        raise ConfigError(
            "nodes.fallback_node and nodes.assignment = true exclude each other: "
            "with assignment, node/weave answers from the node list.")
    if auth.check_node and not nodes.this_node:
        raise ConfigError(
            "auth.check_node = true needs nodes.this_node, this server's URL in the node list.")
    return nodes


def _check_throttle(throttle):
    """Lockouts longer than the window would end early, when their counter is forgotten."""
    for key in ("lockout_seconds", "account_lockout_seconds"):
        if getattr(throttle, key) > throttle.window_seconds:
            raise ConfigError(f"throttle.{key} ({getattr(throttle, key)}) must not exceed "
                              f"throttle.window_seconds ({throttle.window_seconds}).")
    for key in ("max_failures", "address_max_failures", "account_max_failures",
                "reset_code_max_failures", "reset_mail_max_per_hour", "window_seconds",
                "trusted_seconds"):
        if getattr(throttle, key) < 1:
            raise ConfigError(f"throttle.{key} must be at least 1.")
    if throttle.reset_mail_interval_seconds < 0:
        raise ConfigError("throttle.reset_mail_interval_seconds must not be negative.")


def expand_environment(key, value):
    """Replace each ``${NAME}`` in ``value`` by the environment variable; unset is an error.

    Substituted text is not expanded again, so a password may contain ``$``.
    """
    def substitute(match):
        escaped, name = match.groups()
        if escaped:
            return "${" + name + "}"
        if name not in os.environ:
            raise ConfigError(
                f"{key} refers to the environment variable {name}, which is not set.")
        return os.environ[name]

    return _ENVIRONMENT_REFERENCE.sub(substitute, value)


def parse_networks(key, value):
    """``127.0.0.1 10.0.0.0/8, ::1`` -> a tuple of :mod:`ipaddress` networks."""
    networks = []
    for item in re.split(r"[\s,]+", str(value).strip()):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                f"{key} must list IP addresses or networks (such as 10.0.0.0/8), "
                f"not {item!r}.") from None
    return tuple(networks)


def parse_choice(key, value, choices):
    text = str(value).strip().lower()
    if text not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, not {value!r}.")
    return text


def normalize_node_url(url):
    """``sync.example.org`` -> ``https://sync.example.org/``; keeps given schemes."""
    if not url.startswith(("http://", "https://")):
        url = "https://" + url
    if not url.endswith("/"):
        url += "/"
    return url


def _build(section, cls, values, plugins=(), defaults=None, **fixed):
    """Convert ``values`` to the field types of ``cls``; reject unknown keys.

    ``plugins`` are the backend classes (one, or a tuple) whose
    ``extra_settings`` are allowed.
    """
    if isinstance(plugins, type):
        plugins = (plugins,)
    fields = {field.name: field for field in dataclasses.fields(cls)}
    extra_keys = {key for plugin in plugins if plugin
                  for key in getattr(plugin, "extra_settings", ())}
    converted = dict(defaults or {})
    for option, value in values.items():
        key = f"{section}.{option}"
        if option in fixed:
            continue
        if option in extra_keys:
            continue
        field = fields.get(option)
        if field is None or option == "options":
            raise ConfigError(f"Unknown setting {key!r}.")
        parse = field.metadata.get("parse")
        converted[option] = parse(key, value) if parse else _convert(key, value, field.type)
    converted.update(fixed)
    return cls(**converted)


def _convert(key, value, annotation):
    if annotation in (bool, "bool"):
        text = str(value).lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"{key} must be true or false, not {value!r}.")
    if annotation in (int, "int"):
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a whole number, not {value!r}.") from None
        if number < 0:
            raise ConfigError(f"{key} must not be negative (got {number}).")
        return number
    if annotation in (float, "float"):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a number, not {value!r}.") from None
        if not number >= 0 or number == float("inf"):
            raise ConfigError(f"{key} must be a finite number, not negative (got {value!r}).")
        return number
    # Optional[str] / str: empty means unset (${NAME} was expanded by parse_settings).
    return str(value) or None


def read_ini(path):
    """The ``[app:main]`` keys of a PasteDeploy ini file, as the server reads them.

    Raises :class:`ConfigError` when the file is missing or has no usable section.
    """
    import configparser

    from paste.deploy.loadwsgi import APP, loadcontext

    absolute = os.path.abspath(path)
    if not os.path.exists(absolute):
        raise ConfigError(f"the configuration file {path} does not exist")
    try:
        return dict(loadcontext(APP, "config:" + absolute).local_conf)
    except (LookupError, configparser.Error) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"{path} is not a usable configuration file: {first_line}") from None


def settings_from_ini(path):
    """:class:`Settings` of a PasteDeploy ini file (its ``[app:main]`` section)."""
    return parse_settings(read_ini(path))
