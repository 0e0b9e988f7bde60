"""Settings: the ``[app:main]`` keys, parsed once into typed objects.

Every key is dotted, ``section.option`` (``storage.sqluri``). Each section
becomes one frozen dataclass; controllers and backends receive the one they
need, never the raw mapping. A misspelt key, a bad value or a missing
required key raises :class:`ConfigError` with one sentence naming the key.
"""

import dataclasses
import os
from collections.abc import Mapping

from syncserver.auth import AuthBackend
from syncserver.errors import ConfigError
from syncserver.plugins import resolve_backend
from syncserver.storage import StorageBackend

STORAGE_BACKENDS = {"sql": "syncserver.storage.sql.SQLStorage"}
AUTH_BACKENDS = {"sql": "syncserver.auth.sql.SQLAuth"}

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0", ""}


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
    pool_size: int = 10
    pool_timeout: int = 30
    pool_recycle: int = 3600
    #: Seconds to open a database connection before answering 503 (MySQL, PostgreSQL).
    connect_timeout: int = 10
    #: Seconds one statement may take before it is abandoned with a 503 (MySQL, PostgreSQL).
    query_timeout: int = 30
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


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every section, as :func:`parse_settings` built them."""

    storage: StorageSettings
    auth: AuthSettings
    nodes: NodeSettings
    global_: GlobalSettings


_SECTIONS = {
    "storage": StorageSettings,
    "auth": AuthSettings,
    "nodes": NodeSettings,
    "global": GlobalSettings,
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
        grouped[section][option] = value.strip() if isinstance(value, str) else value

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
    return Settings(storage=storage, auth=auth, nodes=nodes, global_=global_)


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
        converted[option] = _convert(key, value, field.type)
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
    # Optional[str] / str: empty means unset; ${VAR} reads the environment.
    text = str(value)
    if text.startswith("${") and text.endswith("}"):
        name = text[2:-1]
        if name not in os.environ:
            raise ConfigError(f"{key} refers to the environment variable {name}, which is not set.")
        text = os.environ[name]
    return text or None
