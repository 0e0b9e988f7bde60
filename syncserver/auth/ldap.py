"""Authentication against an LDAP directory (OpenLDAP, 389-DS, Active Directory, ...).

``auth.backend = ldap``. Checking a password is two steps, never a hash
comparison on our side:

1. Search ``auth.users_base_dn`` (subtree) with ``auth.user_filter``, in
   which ``{username}`` is the Sync username escaped for LDAP filters, and
   with ``auth.enabled_filter`` when set. The search runs on a pooled
   connection bound as the service account ``auth.bind_dn`` (anonymous
   when empty). No entry, or more than one, means no login.
2. Bind as the entry's DN with the given password, on a connection of its
   own that is closed right after. An empty password is refused before
   (LDAP would treat it as an anonymous bind, which always succeeds).

The server remembers verified logins in front of this backend
(:class:`~syncserver.auth.cached.CachedAuth`), so a Sync client's stream of
requests costs one search and one bind per ``auth.credentials_cache_seconds``;
the wrapper also makes every process forget the logins of an account changed
through this server. A change made in the directory itself is noticed when
the remembered login expires.

The user id that keys stored data comes from ``auth.uid_number_attribute``
(e.g. ``uidNumber``) when set, else from the SQL id map of
:mod:`syncserver.auth.ldap_ids` on ``auth.sqluri``.

Without ``auth.admin_bind_dn`` the directory is read-only for this server
(:attr:`manages_accounts` is False): registration, password and e-mail
changes and deletions are refused with a message saying the directory
manages accounts. With it, they write to the directory; passwords go through
the LDAP Password Modify extended operation (the server hashes them) when
the directory offers it, else as ``{SSHA}`` values of ``userPassword``.

A directory that is down or slower than ``auth.ldap_timeout`` gives
:class:`~syncserver.auth.AuthUnavailable` (503), never a failed login.
"""

import base64
import hashlib
import logging
import os
import threading

import ldap
import ldap.dn
import ldap.filter
import ldap.modlist
from sqlalchemy import exc as sqlalchemy_exc

from syncserver.auth import (
    AccountsManagedElsewhere,
    AuthBackend,
    AuthUnavailable,
    RegistrationClosed,
    User,
    UserExists,
    UserNotFound,
)
from syncserver.auth.ldap_connections import (
    ConnectionPool,
    DirectoryConnector,
    describe,
    directory_errors,
)
from syncserver.auth.ldap_ids import DirectoryIdMap
from syncserver.auth.ldap_listing import DirectoryListing, first_value
from syncserver.auth.ldap_options import (
    USERNAME_PLACEHOLDER,
    LDAPSettings,
    checked_options,
    id_database,
)
from syncserver.auth.usernames import is_valid_username

logger = logging.getLogger(__name__)
security_log = logging.getLogger("syncserver.security")

PASSWORD_MODIFY_OID = "1.3.6.1.4.1.4203.1.11.1"
READ_ONLY_MESSAGE = ("Accounts are managed by the company directory: ask its administrators "
                     "to create, change or delete them.")

#: Bind results that mean "these credentials do not log in", not "the directory is down".
_REFUSED_BINDS = (ldap.INVALID_CREDENTIALS, ldap.UNWILLING_TO_PERFORM,
                  ldap.INAPPROPRIATE_AUTH, ldap.INVALID_DN_SYNTAX, ldap.NO_SUCH_OBJECT)


class LDAPAuth(DirectoryListing, AuthBackend):
    """Accounts in an LDAP directory; see the module docstring. Thread-safe."""

    #: The ``auth.ldapuri``, ``auth.bind_*``... keys: accepted with this backend only.
    settings_class = LDAPSettings

    def __init__(self, ldapuri, users_base_dn, *, user_filter="(uid={username})",
                 mail_attribute="mail", enabled_filter=None, bind_dn=None, bind_password=None,
                 starttls=False, ca_file=None, timeout=5, pool_size=5, pool_lifetime=600,
                 uid_number_attribute=None, id_map=None, admin_bind_dn=None,
                 admin_bind_password=None, new_users_base_dn=None, username_attribute="uid",
                 new_user_object_classes=("inetOrgPerson",), allow_new_users=True):
        self.users_base_dn = users_base_dn
        self.user_filter = user_filter
        self.mail_attribute = mail_attribute
        self.enabled_filter = enabled_filter
        self.uid_number_attribute = uid_number_attribute
        self.id_map = id_map
        self.admin_bind_dn = admin_bind_dn
        self._admin_bind_password = admin_bind_password
        self.new_users_base_dn = new_users_base_dn or users_base_dn
        self.username_attribute = username_attribute
        self.new_user_object_classes = tuple(new_user_object_classes)
        self.allow_new_users = allow_new_users
        self.connector = DirectoryConnector(ldapuri, timeout=timeout, starttls=starttls,
                                            ca_file=ca_file)
        self.timeout = timeout
        self.pool = ConnectionPool(self.connector, bind_dn, bind_password,
                                   size=pool_size, lifetime=pool_lifetime)
        self._root_dse_features = None
        self._password_modify_supported = None
        self._paged_results_supported = None
        self._capability_lock = threading.Lock()
        self.attributes = [mail_attribute] + ([uid_number_attribute]
                                              if uid_number_attribute else [])

    @classmethod
    def from_settings(cls, settings):
        """A backend whose id map has a database of its own (the server: :meth:`open`)."""
        return cls.open(settings, None)

    @classmethod
    def open(cls, settings, databases):
        ldap_settings = settings.backend_settings or LDAPSettings()
        options = checked_options(settings, ldap_settings)
        database = id_database(settings, ldap_settings, databases)
        return cls(
            options["ldapuri"], options["users_base_dn"],
            user_filter=options["user_filter"],
            mail_attribute=ldap_settings.mail_attribute or "mail",
            enabled_filter=ldap_settings.enabled_filter,
            bind_dn=ldap_settings.bind_dn, bind_password=ldap_settings.bind_password,
            starttls=ldap_settings.ldap_starttls, ca_file=ldap_settings.ldap_ca_file,
            timeout=max(1, ldap_settings.ldap_timeout),
            pool_size=ldap_settings.ldap_pool_size,
            pool_lifetime=ldap_settings.ldap_pool_lifetime,
            uid_number_attribute=ldap_settings.uid_number_attribute,
            id_map=DirectoryIdMap(database) if database is not None else None,
            admin_bind_dn=ldap_settings.admin_bind_dn,
            admin_bind_password=ldap_settings.admin_bind_password,
            new_users_base_dn=ldap_settings.new_users_base_dn,
            username_attribute=ldap_settings.username_attribute or "uid",
            new_user_object_classes=(ldap_settings.new_user_object_classes
                                     or "inetOrgPerson").split(),
            allow_new_users=settings.allow_new_users,
        )

    @property
    def manages_accounts(self):
        return self.admin_bind_dn is not None

    def close(self):
        self.pool.close()

    # --- reads --------------------------------------------------------------

    def is_healthy(self):
        try:
            with directory_errors("checking health"):
                self.pool.run(lambda connection: connection.search_ext_s(
                    "", ldap.SCOPE_BASE, "(objectClass=*)", ["1.1"], timeout=self.timeout))
        except (AuthUnavailable, ldap.LDAPError) as error:
            logger.warning("LDAP health check failed: %s", error)
            return False
        return self.id_map is None or self.id_map.is_healthy()

    def check_search_base(self):
        """Bind as the service account and read ``auth.users_base_dn`` (``syncserver-admin
        check``); raise :class:`AuthUnavailable` with the reason when either fails."""
        try:
            with directory_errors("reading auth.users_base_dn"):
                self.pool.run(lambda connection: connection.search_ext_s(
                    self.users_base_dn, ldap.SCOPE_BASE, "(objectClass=*)", ["1.1"],
                    timeout=self.timeout))
        except ldap.NO_SUCH_OBJECT:
            raise AuthUnavailable(f"auth.users_base_dn {self.users_base_dn!r} does not exist "
                                  "or the service account cannot see it") from None
        except ldap.INVALID_CREDENTIALS:
            raise AuthUnavailable("the directory refused the service account "
                                  "(check auth.bind_dn and auth.bind_password)") from None
        except ldap.LDAPError as error:
            raise AuthUnavailable(f"searching auth.users_base_dn: {describe(error)}") from None

    def get_user(self, username):
        if not is_valid_username(username):
            return None
        entry = self._find(username, self._filter_for(username))
        if entry is None:
            return None
        dn, attributes = entry
        user_id = self._user_id(username, dn, attributes)
        if user_id is None:
            return None
        return User(user_id=user_id, username=username, email=first_value(attributes,
                    self.mail_attribute), enabled=self._is_enabled(dn))

    def authenticate(self, username, password):
        if not is_valid_username(username) or not isinstance(password, str) or not password:
            return None
        entry = self._find(username, self._filter_for(username, enabled_only=True))
        if entry is None:
            return None
        dn, attributes = entry
        if not self._password_matches(dn, password):
            return None
        user_id = self._user_id(username, dn, attributes)
        if user_id is None:
            return None
        return User(user_id=user_id, username=username,
                    email=first_value(attributes, self.mail_attribute), enabled=True)

    def _filter_for(self, username, enabled_only=False):
        """The search filter for ``username``: every value escaped, so it matches only them."""
        user_filter = self.user_filter.replace(
            USERNAME_PLACEHOLDER, ldap.filter.escape_filter_chars(username))
        if enabled_only and self.enabled_filter:
            return f"(&{user_filter}{self.enabled_filter})"
        return user_filter

    def _find(self, username, filterstr):
        """The one (dn, attributes) the filter matches, or None (none, or ambiguous)."""
        def search(connection):
            # sizelimit 2: enough to notice an ambiguous filter, never a full scan's results.
            return connection.search_ext_s(
                self.users_base_dn, ldap.SCOPE_SUBTREE, filterstr, self.attributes,
                timeout=self.timeout, sizelimit=2)
        try:
            with directory_errors("searching for a user"):
                results = self.pool.run(search)
        except ldap.SIZELIMIT_EXCEEDED:
            results = [("", {}), ("", {})]
        except ldap.NO_SUCH_OBJECT:
            logger.error("auth.users_base_dn %r does not exist in the directory",
                         self.users_base_dn)
            return None
        except ldap.INVALID_CREDENTIALS as error:
            raise AuthUnavailable("the directory refused the service account "
                                  "(check auth.bind_dn and auth.bind_password)") from error
        entries = [(dn, attributes) for dn, attributes in results if dn]
        if len(entries) > 1:
            logger.error("auth.user_filter matches several directory entries for user %r; "
                         "refusing the login (make the filter match one entry)", username)
            return None
        return entries[0] if entries else None

    def _is_enabled(self, dn):
        if not self.enabled_filter:
            return True
        def check(connection):
            return connection.search_ext_s(dn, ldap.SCOPE_BASE, self.enabled_filter, ["1.1"],
                                           timeout=self.timeout)
        try:
            with directory_errors("checking whether an account is enabled"):
                return bool(self.pool.run(check))
        except ldap.NO_SUCH_OBJECT:
            return False

    def _password_matches(self, dn, password):
        """Bind as ``dn`` on a connection of its own: the directory checks the password."""
        try:
            with directory_errors("checking a password"):
                connection = self.connector.open(dn, password)
        except _REFUSED_BINDS as error:
            security_log.info("LDAP bind refused for %r: %s", dn, describe(error))
            return False
        connection.unbind_s()
        return True

    def _user_id(self, username, dn, attributes):
        if self.uid_number_attribute:
            value = first_value(attributes, self.uid_number_attribute)
            try:
                number = int(value)
            except (TypeError, ValueError):
                number = 0
            if number < 1:
                logger.error("directory entry %r has no positive %s: it cannot use Sync",
                             dn, self.uid_number_attribute)
                return None
            return number
        return self.id_map.user_id(username)

    # --- writes -------------------------------------------------------------

    def _require_admin(self):
        if not self.manages_accounts:
            raise AccountsManagedElsewhere(READ_ONLY_MESSAGE)

    def _run_as_admin(self, action, operation):
        try:
            with directory_errors(action):
                with self.connector.bound(self.admin_bind_dn, self._admin_bind_password) as conn:
                    return operation(conn)
        except ldap.INVALID_CREDENTIALS as error:
            raise AuthUnavailable("the directory refused the admin account "
                                  "(check auth.admin_bind_dn and auth.admin_bind_password)"
                                  ) from error

    def _dn_of(self, username):
        entry = self._find(username, self._filter_for(username))
        if entry is None:
            raise UserNotFound(f"no account named {username!r}")
        return entry[0]

    def create_user(self, username, password, email):
        self._require_admin()
        if not self.allow_new_users:
            raise RegistrationClosed("new accounts are not allowed on this server "
                                     "(auth.allow_new_users is false)")
        if self.uid_number_attribute:
            raise AccountsManagedElsewhere(
                f"new accounts need a {self.uid_number_attribute}: create them in the directory")
        if not is_valid_username(username):
            raise ValueError("a username is 1 to 32 characters of [a-zA-Z0-9._-]")
        if not isinstance(password, str) or not password:
            raise ValueError("a password is required")
        if self._find(username, self._filter_for(username)) is not None:
            raise UserExists(f"the username {username!r} is taken")
        dn = f"{self.username_attribute}={ldap.dn.escape_dn_chars(username)},"
        dn += self.new_users_base_dn
        entry = {
            "objectClass": [name.encode() for name in self.new_user_object_classes],
            self.username_attribute: [username.encode()],
            "cn": [username.encode()],
            "sn": [username.encode()],
        }
        if email:
            entry[self.mail_attribute] = [email.encode("utf-8")]
        use_exop = self._supports_password_modify()
        if not use_exop:
            entry["userPassword"] = [ssha(password).encode("ascii")]

        def add(connection):
            connection.add_s(dn, ldap.modlist.addModlist(entry))
            if use_exop:
                try:
                    connection.passwd_s(dn, None, password)
                except BaseException:
                    connection.delete_s(dn)
                    raise
        try:
            self._run_as_admin("creating a user", add)
        except ldap.ALREADY_EXISTS:
            raise UserExists(f"the username {username!r} is taken") from None
        return User(user_id=self.id_map.user_id(username), username=username, email=email)

    def set_password(self, username, new_password):
        self._require_admin()
        if not isinstance(new_password, str) or not new_password:
            raise ValueError("a password is required")
        dn = self._dn_of(username)
        use_exop = self._supports_password_modify()

        def change(connection):
            if use_exop:
                connection.passwd_s(dn, None, new_password)
            else:
                connection.modify_s(dn, [(ldap.MOD_REPLACE, "userPassword",
                                          [ssha(new_password).encode("ascii")])])
        self._run_as_admin("changing a password", change)

    def set_email(self, username, email):
        self._require_admin()
        if email is not None and not isinstance(email, str):
            raise ValueError("the e-mail address must be a string")
        dn = self._dn_of(username)
        values = [email.encode("utf-8")] if email else None
        self._run_as_admin("changing an e-mail address", lambda connection: connection.modify_s(
            dn, [(ldap.MOD_REPLACE, self.mail_attribute, values)]))

    def set_enabled(self, username, enabled):
        raise AccountsManagedElsewhere(
            "accounts are enabled or disabled in the directory (auth.enabled_filter decides)")

    def delete_user(self, username):
        self._require_admin()
        if not is_valid_username(username):
            return False
        try:
            dn = self._dn_of(username)
        except UserNotFound:
            return False
        try:
            self._run_as_admin("deleting a user", lambda connection: connection.delete_s(dn))
        except ldap.NO_SUCH_OBJECT:
            return False
        if self.id_map is not None:
            try:
                self.id_map.forget(username)
            except sqlalchemy_exc.SQLAlchemyError as error:
                logger.warning("could not remove the id of deleted user %r: %s", username, error)
        return True

    def _supports_password_modify(self):
        """Whether the directory hashes passwords itself (RFC 3062)."""
        if self._password_modify_supported is None:
            self._password_modify_supported = PASSWORD_MODIFY_OID in self._features()
        return self._password_modify_supported

    def _features(self):
        """The extensions and controls of the directory's root DSE, read once."""
        if self._root_dse_features is None:
            def read_root_dse(connection):
                return connection.search_ext_s(
                    "", ldap.SCOPE_BASE, "(objectClass=*)",
                    ["supportedExtension", "supportedControl"], timeout=self.timeout)
            with self._capability_lock:
                with directory_errors("reading the directory's capabilities"):
                    results = self.pool.run(read_root_dse)
                features = set()
                for _, attributes in results:
                    for name in ("supportedExtension", "supportedControl"):
                        features.update(value.decode("ascii", "replace")
                                        for value in attributes.get(name, ()))
                self._root_dse_features = frozenset(features)
        return self._root_dse_features

def ssha(password):
    """``{SSHA}`` value of ``password`` (salted SHA-1), which every LDAP server verifies."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode("utf-8") + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode("ascii")
