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
from syncserver.errors import ConfigError
from syncserver.plugins import resolve_backend
from syncserver.storage import StorageBackend

STORAGE_BACKENDS = {"sql": "syncserver.storage.sql.SQLStorage"}
AUTH_BACKENDS = {"sql": "syncserver.auth.sql.SQLAuth"}

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
    pool_size: int = 10
    pool_timeout: int = 30
    pool_recycle: int = 3600
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class NodeSettings:
    """``nodes.*``: which storage node the User API hands to clients."""

    #: Node URL given to every user; None means "this server, as the client reached it".
    fallback_node: str | None = None


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


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every section, as :func:`parse_settings` built them."""

    storage: StorageSettings
    auth: AuthSettings
    nodes: NodeSettings
    global_: GlobalSettings
    logging: LoggingSettings = LoggingSettings()


_SECTIONS = {
    "storage": StorageSettings,
    "auth": AuthSettings,
    "nodes": NodeSettings,
    "global": GlobalSettings,
    "logging": LoggingSettings,
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
    auth_backend = resolve_backend(
        "auth.backend", grouped["auth"].get("backend", "sql"), AUTH_BACKENDS, AuthBackend)

    storage = _build("storage", StorageSettings, grouped["storage"], storage_backend,
                     backend=storage_backend, options=dict(grouped["storage"]))
    auth_defaults = {"sqluri": storage.sqluri, "create_tables": storage.create_tables}
    auth = _build("auth", AuthSettings, grouped["auth"], auth_backend,
                  defaults=auth_defaults, backend=auth_backend, options=dict(grouped["auth"]))
    nodes = _build("nodes", NodeSettings, grouped["nodes"])
    if nodes.fallback_node:
        nodes = dataclasses.replace(nodes, fallback_node=normalize_node_url(nodes.fallback_node))
    global_ = _build("global", GlobalSettings, grouped["global"])
    if global_.public_url:
        global_ = dataclasses.replace(global_, public_url=normalize_node_url(global_.public_url))
    logging_ = _build("logging", LoggingSettings, grouped["logging"])
    return Settings(storage=storage, auth=auth, nodes=nodes, global_=global_, logging=logging_)


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


def _build(section, cls, values, plugin=None, defaults=None, **fixed):
    """Convert ``values`` to the field types of ``cls``; reject unknown keys."""
    fields = {field.name: field for field in dataclasses.fields(cls)}
    extra_keys = set(getattr(plugin, "extra_settings", ())) if plugin else set()
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
    # Optional[str] / str: empty means unset (${NAME} was expanded by parse_settings).
    return str(value) or None
