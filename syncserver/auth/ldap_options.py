"""The LDAP backend's own settings (``auth.ldapuri`` ...), checked at start-up, and its database.

Why a module of its own: :mod:`syncserver.auth.ldap` is about accounts;
this is about refusing a configuration that cannot work with a sentence
naming the key (:class:`~syncserver.errors.ConfigError`) before the first
request, instead of a 500 or a 503 on every request.
"""

import dataclasses
import os

import ldap
import ldap.dn

from syncserver.auth.ldap_connections import DirectoryConnector, close_quietly
from syncserver.db import Database
from syncserver.errors import ConfigError

USERNAME_PLACEHOLDER = "{username}"


@dataclasses.dataclass(frozen=True)
class LDAPSettings:
    """``auth.*`` keys read by the LDAP backend (``auth.backend = ldap``) and by no other."""

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


def checked_options(settings, ldap_settings):
    """The LDAP settings that must be present and well-formed (the CA file loadable),
    or a :class:`ConfigError`. ``settings`` is the ``auth`` section, ``ldap_settings``
    its :class:`LDAPSettings`."""
    settings = ldap_settings
    uri = settings.ldapuri
    if not uri:
        raise ConfigError("auth.ldapuri is required by the LDAP authentication backend "
                          "(e.g. ldaps://ldap.example.org).")
    if not all(part.startswith(("ldap://", "ldaps://", "ldapi://")) for part in uri.split()):
        raise ConfigError(f"auth.ldapuri must start with ldap://, ldaps:// or ldapi://, "
                          f"not {uri!r}.")
    if settings.ldap_starttls and uri.startswith("ldaps://"):
        raise ConfigError("auth.ldap_starttls is for ldap:// URIs; ldaps:// is already TLS.")
    if not settings.users_base_dn or not ldap.dn.is_dn(settings.users_base_dn):
        raise ConfigError("auth.users_base_dn must be the DN under which users are searched "
                          "(e.g. ou=people,dc=example,dc=org).")
    user_filter = settings.user_filter or "(uid={username})"
    if USERNAME_PLACEHOLDER not in user_filter or not _parenthesized(user_filter):
        raise ConfigError("auth.user_filter must be a filter in parentheses containing "
                          f"{{username}}, such as (uid={{username}}), not {user_filter!r}.")
    if settings.enabled_filter and not _parenthesized(settings.enabled_filter):
        raise ConfigError("auth.enabled_filter must be a filter in parentheses, "
                          f"such as (!(employeeType=disabled)), not {settings.enabled_filter!r}.")
    for key in ("bind", "admin_bind"):
        dn, password = getattr(settings, f"{key}_dn"), getattr(settings, f"{key}_password")
        if dn and not password:
            raise ConfigError(f"auth.{key}_password is required with auth.{key}_dn "
                              "(an empty password would bind anonymously).")
        if password and not dn:
            raise ConfigError(f"auth.{key}_password is set but auth.{key}_dn is not.")
        if dn and not ldap.dn.is_dn(dn):
            raise ConfigError(f"auth.{key}_dn is not a valid DN: {dn!r}.")
    if settings.new_users_base_dn and not ldap.dn.is_dn(settings.new_users_base_dn):
        raise ConfigError("auth.new_users_base_dn is not a valid DN.")
    _check_ca_file(uri, settings.ldap_ca_file)
    return {"ldapuri": uri, "users_base_dn": settings.users_base_dn,
            "user_filter": user_filter}


def _parenthesized(text):
    return text.startswith("(") and text.endswith(")")


def _check_ca_file(uri, ca_file):
    """Refuse at start-up a CA file libldap cannot load (else every request would fail)."""
    if not ca_file:
        return
    if not os.path.isfile(ca_file) or not os.access(ca_file, os.R_OK):
        raise ConfigError(f"auth.ldap_ca_file names no readable file: {ca_file!r}.")
    probe = ldap.initialize(uri)
    try:
        DirectoryConnector.set_tls_options(probe, ca_file)
    except (ValueError, ldap.LDAPError):
        raise ConfigError(f"auth.ldap_ca_file {ca_file!r} is not a PEM certificate file "
                          "libldap can load.") from None
    finally:
        close_quietly(probe)


def id_database(settings, ldap_settings, databases):
    """The :class:`~syncserver.db.Database` of the id map (``auth.sqluri``); None without one.

    ``databases`` is the server's registry (None: a database of its own).
    """
    if not settings.sqluri:
        if ldap_settings.uid_number_attribute:
            return None
        raise ConfigError("auth.sqluri (or storage.sqluri) is required by the LDAP backend to "
                          "keep user ids, unless auth.uid_number_attribute is set.")
    if databases is not None:
        return databases.database(settings.sqluri, "auth.sqluri", settings.create_tables)
    return Database(settings.sqluri, key="auth.sqluri", pool_size=settings.pool_size,
                    pool_timeout=settings.pool_timeout, pool_recycle=settings.pool_recycle)
