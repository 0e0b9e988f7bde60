"""Settings: the ``[app:main]`` keys, parsed once into typed objects.

Every key is dotted, ``section.option`` (``storage.sqluri``). Each section
becomes one frozen dataclass (:mod:`syncserver.settings.sections`);
controllers and backends receive the one they need, never the raw mapping.
A backend (bundled or a plugin) declares its own keys as a dataclass, its
``settings_class``: they are converted and checked the same way and reach
it as ``settings.backend_settings``. A misspelt key, a bad value or a
missing required key raises :class:`ConfigError` with one sentence naming
the key.
"""

import dataclasses
import importlib
import os
import re

from syncserver.auth import AuthBackend
from syncserver.captcha import CaptchaBackend
from syncserver.errors import ConfigError
from syncserver.nodes import NodeBackend
from syncserver.plugins import resolve_backend
from syncserver.settings.databases import check_drivers
from syncserver.settings.sections import (
    _SECTIONS,
    ACCESS_LOG_FORMATS,
    LOCAL_NETWORKS,
    NOT_KEYS,
    AuthSettings,
    CaptchaSettings,
    GlobalSettings,
    LoggingSettings,
    MetricsSettings,
    NodeSettings,
    PagesSettings,
    ResetSettings,
    Settings,
    SMTPSettings,
    Storage15Settings,
    StorageSettings,
    Sync11Settings,
    ThrottleSettings,
    TokenserverSettings,
)
from syncserver.settings.values import (
    convert,
    expand_environment,
    normalize_node_url,
    parse_choice,
    parse_networks,
)
from syncserver.storage import StorageBackend
from syncserver.tokenserver.endpoints import node_base_url
from syncserver.tokenserver.fxa_client import normalize_server_url

__all__ = [
    "ACCESS_LOG_FORMATS", "AUTH_BACKENDS", "CAPTCHA_BACKENDS", "LOCAL_NETWORKS",
    "NODE_BACKENDS", "STORAGE_BACKENDS", "AuthSettings", "CaptchaSettings", "GlobalSettings",
    "LoggingSettings", "MetricsSettings", "NodeSettings", "PagesSettings", "ResetSettings",
    "SMTPSettings", "Settings", "Storage15Settings", "StorageSettings", "Sync11Settings",
    "ThrottleSettings",
    "TokenserverSettings",
    "convert",
    "expand_environment", "normalize_node_url", "parse_choice", "parse_networks",
    "parse_settings", "read_ini", "settings_from_ini",
]

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

    storage = _build_with_backends("storage", StorageSettings, grouped["storage"],
                                   storage_backend, wrapped_backend)
    auth_defaults = {"sqluri": storage.sqluri, "create_tables": storage.create_tables}
    auth = _build_with_backends("auth", AuthSettings, grouped["auth"], auth_backend,
                                defaults=auth_defaults)
    nodes = _build_nodes(grouped["nodes"], auth, grouped["tokenserver"].get("sqluri"))
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
    captcha = _build_with_backends("captcha", CaptchaSettings, grouped["captcha"],
                                   captcha_backend)
    throttle = _build("throttle", ThrottleSettings, grouped["throttle"], defaults={
        "sqluri": auth.sqluri, "create_tables": auth.create_tables})
    _check_throttle(throttle)
    metrics = _check_metrics(_build("metrics", MetricsSettings, grouped["metrics"]))
    storage15 = _build("storage15", Storage15Settings, grouped["storage15"],
                       defaults={"redis_url": auth.redis_url})
    _check_storage15(storage, storage15)
    tokenserver = _check_tokenserver(_build(
        "tokenserver", TokenserverSettings, grouped["tokenserver"],
        defaults={"sqluri": nodes.sqluri, "create_tables": nodes.create_tables}), nodes)
    sync11 = _build("sync11", Sync11Settings, grouped["sync11"])
    parsed = Settings(storage=storage, auth=auth, nodes=nodes, global_=global_,
                      smtp=smtp, reset=reset, pages=pages, captcha=captcha, throttle=throttle,
                      logging=logging_, metrics=metrics, storage15=storage15,
                      tokenserver=tokenserver, sync11=sync11)
    _check_shape(parsed)
    check_drivers(parsed)
    return parsed


def _check_shape(settings):
    """A process serves something; Sync 1.1's own features need Sync 1.1."""
    if not settings.serves:
        raise ConfigError("sync11.enabled, storage15.enabled and tokenserver.enabled are all "
                          "false: this process would serve nothing.")
    if settings.nodes.assignment and not settings.sync11.enabled:
        raise ConfigError("nodes.assignment = true is the Sync 1.1 node assignment "
                          "(node/weave): it needs sync11.enabled = true. The tokenserver "
                          "assigns Sync 1.5 users from the node list without it.")


def _check_tokenserver(tokenserver, nodes):
    """The users refer to the node list, so both live in one database; the rest is checked."""
    if tokenserver.sqluri != nodes.sqluri:
        raise ConfigError("tokenserver.sqluri and nodes.sqluri must name the same database "
                          "(the Sync 1.5 users refer to the node list): set one of them.")
    if tokenserver.duration < 1:
        raise ConfigError("tokenserver.duration must be at least 1 second.")
    if tokenserver.replaced_grace_seconds < 0:
        raise ConfigError("tokenserver.replaced_grace_seconds must not be negative.")
    for fxa_uid in tokenserver.allowed_fxa_uids:
        if not _FXA_UID.fullmatch(fxa_uid):
            raise ConfigError(f"tokenserver.allowed_fxa_uids lists {fxa_uid!r}: it takes "
                              "Mozilla-account ids (32 hexadecimal digits), not e-mail "
                              "addresses, which the tokenserver never sees.")
    changes = {}
    if tokenserver.node_url:
        try:
            url = tokenserver.node_url
            if "://" not in url:
                url = "https://" + url  # as nodes.* reads a URL without scheme
            changes["node_url"] = node_base_url(url)
        except ValueError as error:
            raise ConfigError(f"tokenserver.node_url is not a usable URL: {error}.") from None
    if tokenserver.node_type and not _NODE_TYPE.fullmatch(tokenserver.node_type):
        raise ConfigError("tokenserver.node_type must be a short label such as mysql "
                          f"(letters, digits, - and _), not {tokenserver.node_type!r}.")
    tokenserver.oauth_settings()  # raises ConfigError for bad oauth_* values
    normalize_server_url(tokenserver.oauth_server_url)
    return dataclasses.replace(tokenserver, **changes) if changes else tokenserver


#: What an FxA uid (the JWT ``sub``) may look like, as the verifier accepts it.
_FXA_UID = re.compile(r"[A-Za-z0-9=_-]{1,64}")
_NODE_TYPE = re.compile(r"[A-Za-z0-9_-]{1,32}")


def _check_storage15(storage, storage15):
    """Limits that contradict each other would make clients loop on "retry" answers."""
    if storage.max_post_records < 1 or storage.max_total_records < storage.max_post_records:
        raise ConfigError("storage.max_total_records must be at least storage.max_post_records, "
                          "and both at least 1.")
    if storage.max_total_bytes < storage.max_post_bytes:
        raise ConfigError("storage.max_total_bytes must be at least storage.max_post_bytes.")
    if storage.batch_lifetime_seconds < 60:
        raise ConfigError("storage.batch_lifetime_seconds must be at least 60.")
    for origin in storage15.cors_origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ConfigError(f"storage15.cors_origins lists {origin!r}: origins look like "
                              "https://app.example.org (or * for any).")


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


def _build_nodes(values, auth, tokenserver_sqluri=None):
    """``nodes.*``; ``nodes.sqluri`` defaults to ``tokenserver.sqluri`` when only that is set."""
    backend = resolve_backend(
        "nodes.backend", values.get("backend", "sql"), NODE_BACKENDS, NodeBackend)
    defaults = {"sqluri": auth.sqluri, "create_tables": auth.create_tables}
    if tokenserver_sqluri:  # already stripped and expanded, like every value
        defaults["sqluri"] = tokenserver_sqluri
    nodes = _build_with_backends("nodes", NodeSettings, values, backend, defaults=defaults)
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


#: Section -> the bundled backends' aliases: their keys are named in error messages.
_BUNDLED = {"storage": STORAGE_BACKENDS, "auth": AUTH_BACKENDS, "nodes": NODE_BACKENDS,
            "captcha": CAPTCHA_BACKENDS}


def _build_with_backends(section, cls, values, backend, wrapped=None, defaults=None):
    """A section whose backend (and wrapped backend) may declare keys of their own.

    Each key goes to the section's own fields, else to the ``settings_class``
    of the backend, else of the wrapped backend, else (deprecated) to
    ``options`` when listed in a backend's ``extra_settings``.
    """
    own = set(_field_names(cls))
    backend_values, wrapped_values, core = {}, {}, {}
    legacy = {key for plugin in (backend, wrapped) if plugin
              for key in getattr(plugin, "extra_settings", ())}
    for option, value in values.items():
        if option in own or option in ("backend", "wrapped_backend"):
            core[option] = value
        elif option in _field_names(backend_settings_class(backend)):
            backend_values[option] = value
        elif option in _field_names(backend_settings_class(wrapped)):
            wrapped_values[option] = value
        elif option not in legacy:
            raise ConfigError(_unknown_key(section, option, backend, wrapped))
    fixed = {"backend": backend, "options": dict(values),
             "backend_settings": _build_backend_settings(section, backend, backend_values)}
    if wrapped is not None or "wrapped_backend_settings" in own:
        fixed["wrapped_backend"] = wrapped
        fixed["wrapped_backend_settings"] = _build_backend_settings(
            section, wrapped, wrapped_values)
    return _build(section, cls, core, defaults=defaults, **fixed)


def backend_settings_class(backend):
    """The dataclass of a backend class's own keys, or None."""
    settings_class = getattr(backend, "settings_class", None) if backend else None
    if settings_class is not None and not dataclasses.is_dataclass(settings_class):
        raise ConfigError(f"{backend.__module__}.{backend.__qualname__}.settings_class must be "
                          "a dataclass.")
    return settings_class


def _build_backend_settings(section, backend, values):
    settings_class = backend_settings_class(backend)
    if settings_class is None:
        return None
    return _build(section, settings_class, values)


def _field_names(cls):
    if cls is None:
        return frozenset()
    return frozenset(field.name for field in dataclasses.fields(cls)) - NOT_KEYS


def _unknown_key(section, option, backend, wrapped):
    """The sentence for a key nobody reads: says which bundled backend would read it."""
    key = f"{section}.{option}"
    for alias, dotted in _BUNDLED.get(section, {}).items():
        module_name, _, name = dotted.rpartition(".")
        try:
            bundled = getattr(importlib.import_module(module_name), name)
        except ImportError:  # an optional driver is missing: no hint from that backend
            continue
        if bundled in (backend, wrapped):
            continue
        if option in _field_names(backend_settings_class(bundled)):
            current = backend.__name__ if backend else "none"
            return (f"{key} is read only by the {bundled.__name__} backend "
                    f"({section}.backend = {alias}), not by {current}.")
    return f"Unknown setting {key!r}."


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
        if field is None or option in NOT_KEYS:
            raise ConfigError(f"Unknown setting {key!r}.")
        parse = field.metadata.get("parse")
        converted[option] = parse(key, value) if parse else convert(key, value, field.type)
    converted.update(fixed)
    return cls(**converted)


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
