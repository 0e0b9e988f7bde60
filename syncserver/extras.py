"""Optional drivers, and the ``pip install 'syncserver[...]'`` extra that brings each.

The base install (``pip install syncserver``) runs on SQLite alone; MySQL,
PostgreSQL, Redis, LDAP and the metrics page need a package more. A setting
that names one of them without it must say which extra to install, not
``No module named 'MySQLdb'``.
"""

#: Top-level module -> (the extra that installs it, what it is for people).
OPTIONAL_MODULES = {
    "MySQLdb": ("mysql", "the MySQL/MariaDB driver (mysqlclient)"),
    "psycopg": ("postgresql", "the PostgreSQL driver (psycopg 3)"),
    "redis": ("redis", "the Redis client (redis-py)"),
    "ldap": ("ldap", "the LDAP client (python-ldap)"),
    "prometheus_client": ("metrics", "the Prometheus client (prometheus_client)"),
}


def missing_module(error):
    """``(what, how to install it)`` for an :class:`ImportError`.

    ``("the Redis client (redis-py)", "pip install 'syncserver[redis]'")`` for a
    module an extra provides; else the module's own name and ``pip install`` of it.
    """
    name = (getattr(error, "name", None) or "").split(".")[0] or "?"
    known = OPTIONAL_MODULES.get(name)
    if known is None:
        return f"the Python module {name!r}", f"pip install {name}"
    extra, what = known
    return what, f"pip install 'syncserver[{extra}]'"


def is_optional_module(error):
    """True when ``error`` (an :class:`ImportError`) is about a module an extra installs."""
    name = (getattr(error, "name", None) or "").split(".")[0]
    return name in OPTIONAL_MODULES
