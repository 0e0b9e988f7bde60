"""The databases (and Redis) a configuration uses, named by the settings that hold them.

For start-up messages an operator can act on: a URL whose driver is not
installed names the setting and the extra to install (checked while the
settings are parsed, so the server and ``syncserver-admin`` say the same);
a database that does not answer at start names the setting and its URL,
the password hidden.
"""

from sqlalchemy import exc as sqlalchemy_exc
from sqlalchemy.engine import make_url

from syncserver.errors import ConfigError
from syncserver.extras import missing_module

#: A service's unavailable error -> the settings whose databases it reads.
_SERVICE_KEYS = {
    "storage": ("storage.sqluri",),
    "auth": ("auth.sqluri", "reset.sqluri"),
    "nodes": ("nodes.sqluri",),
    "throttle": ("throttle.sqluri",),
}

_DATABASE_KINDS = {"mysql": "MySQL/MariaDB", "mariadb": "MySQL/MariaDB",
                   "postgresql": "PostgreSQL", "sqlite": "SQLite"}


def check_drivers(settings):
    """Raise :class:`ConfigError` when a database URL in use lacks its driver."""
    redis_keys = [key for key, used in (
        ("auth.redis_url", settings.auth.redis_url),
        ("throttle.redis_url", settings.throttle.enabled and settings.throttle.redis_url)) if used]
    if redis_keys:
        try:
            import redis  # noqa: F401
        except ImportError as error:
            what, install = missing_module(error)
            raise ConfigError(f"{redis_keys[0]} needs {what}, which is not installed: "
                              f"{install}.") from None
    for key, url in settings.sql_url_settings():
        try:
            dialect = make_url(url).get_dialect()
        except sqlalchemy_exc.ArgumentError:
            continue  # not a URL at all: the backend says so, naming the key
        try:
            dialect.import_dbapi()
        except ImportError as error:
            kind = _DATABASE_KINDS.get(dialect.name, dialect.name)
            what, install = missing_module(error)
            raise ConfigError(f"{key} is a {kind} URL, but {what} is not installed: "
                              f"{install}.") from None


def redact_url(url):
    """A database URL fit to print: the password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy_exc.ArgumentError:
        return "(an unreadable URL)"


def unavailable_sentence(error, settings):
    """``error`` (a :class:`~syncserver.errors.BackendUnavailable`), naming its setting and URL.

    ``the database of storage.sqluri (mysql://sync:***@db/sync) is unavailable: ...``;
    errors that are not about a database (LDAP, Redis) are returned as they are.
    """
    text = str(error)
    if not text.startswith("database unavailable"):
        return text
    urls = dict(settings.sql_url_settings())
    keys = [key for key in _SERVICE_KEYS.get(getattr(error, "service", ""), ()) if key in urls]
    if not keys:
        return text
    reason = text.removeprefix("database unavailable").lstrip(": ")
    seen, named = set(), []
    for key in keys:
        url = urls[key]
        if url in seen:
            continue
        seen.add(url)
        # The other databases default to storage's: name the key the operator wrote.
        shown_key = "storage.sqluri" if url == urls.get("storage.sqluri") else key
        named.append(f"{shown_key} ({redact_url(url)})")
    return f"the database of {' or '.join(named)} is unavailable: {reason}"
