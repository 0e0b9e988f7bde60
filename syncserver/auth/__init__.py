"""The authentication plugin interface.

Every authentication backend (the bundled SQL and LDAP ones, a user's own
class) implements :class:`AuthBackend`. The User API controller and the HTTP
Basic-auth check talk only to this interface. The server puts
:class:`syncserver.auth.cached.CachedAuth` in front of the configured backend,
so a backend looks users up and checks passwords, and never caches logins
itself.

Usernames reaching a backend are already validated: 1 to 32 characters of
``[a-zA-Z0-9._-]`` (e-mail addresses typed by people are turned into their
Sync hash by :func:`syncserver.auth.usernames.extract_username` first).
Passwords are ``str`` (decoded UTF-8) and may contain any character.
"""

import abc
import dataclasses

from syncserver.errors import BackendUnavailable, NotSupported, PolicyRefusal
from syncserver.plugins import Plugin


class AuthError(Exception):
    """Base class of every error an authentication backend raises on purpose."""


class AuthUnavailable(AuthError, BackendUnavailable):
    """The database or directory behind the backend did not answer (503)."""

    service = "auth"


class RegistrationClosed(AuthError, PolicyRefusal):
    """``auth.allow_new_users`` is false: new accounts are refused.

    A policy, not an outage: the User API answers 503 with a sentence (as
    Mozilla's server did for a closed registration), but nothing is down.
    """


class UserExists(AuthError):
    """An account with that username already exists (400, code 4)."""


class UserIdTaken(AuthError, ValueError):
    """An import asked for a user id that belongs to another account."""


class UserNotFound(AuthError):
    """No account has that username."""


class AccountsManagedElsewhere(AuthError, PolicyRefusal):
    """This server may not make the change: the accounts live in a system it only reads
    (a read-only company directory). The User API answers 403 with the message."""


@dataclasses.dataclass(frozen=True)
class User:
    """An account as the rest of the server sees it.

    ``user_id`` is the stable integer that keys all of the user's stored data;
    ``created_at`` (epoch seconds) is None when the backend does not know it
    (or did not read it: authentication skips it); equality ignores it.
    """

    user_id: int
    username: str
    email: str | None = None
    enabled: bool = True
    created_at: int | None = dataclasses.field(default=None, compare=False)


class AuthBackend(Plugin, abc.ABC):
    """What an authentication backend must provide.

    A backend class is named in ``auth.backend`` (alias or dotted path); the
    server builds it with ``open`` (by default :meth:`from_settings`; see
    :class:`syncserver.plugins.Plugin`, which also says how a backend declares
    keys of its own).
    Every method may raise :class:`AuthUnavailable` when its service is down;
    a wrong password or a disabled account is never an exception, just
    ``None``. Optional capabilities (administration, import) raise
    :class:`~syncserver.errors.NotSupported` unless a backend provides them.
    Thread-safe: one instance serves every thread of the WSGI server.
    """

    #: False when accounts cannot be created, changed or deleted through this
    #: server (a read-only directory): the User API then refuses those
    #: requests before touching anything, and the write methods raise
    #: :class:`AccountsManagedElsewhere`.
    manages_accounts: bool = True

    @classmethod
    @abc.abstractmethod
    def from_settings(cls, settings):
        """Build the backend from a :class:`syncserver.settings.AuthSettings`.

        Raises :class:`~syncserver.errors.ConfigError` naming the key for a
        bad value. Must not connect anywhere slowly: the server starts with
        its services down and answers 503 until they come back.
        """

    @abc.abstractmethod
    def is_healthy(self):
        """Run a trivial real query: True, or False when the service is down. Never raises."""

    def optional_dependencies(self):
        """``{name: check}`` of services used but not needed to serve (the heartbeat's
        "degraded"). Each ``check()`` returns True when its service answers. The default: none."""
        return {}

    @abc.abstractmethod
    def get_user(self, username):
        """Return the :class:`User` (enabled or not), or ``None`` if there is none."""

    @abc.abstractmethod
    def create_user(self, username, password, email):
        """Create an enabled account and return its :class:`User`.

        Raises :class:`UserExists` if the username is taken,
        :class:`RegistrationClosed` when new accounts are not allowed,
        :class:`AccountsManagedElsewhere` when this server may not create
        accounts, and :class:`ValueError` for an invalid username, e-mail or
        empty password.
        """

    @abc.abstractmethod
    def authenticate(self, username, password):
        """Return the :class:`User` if the password is right and the account enabled, else ``None``.

        ``password`` is a ``str`` of any characters (possibly empty: refuse it).
        The server remembers good logins in front of the backend
        (:class:`syncserver.auth.cached.CachedAuth`): this may be slow.
        """

    @abc.abstractmethod
    def set_password(self, username, new_password):
        """Replace the password.

        Raises :class:`UserNotFound`, :class:`AccountsManagedElsewhere`, or
        :class:`ValueError` for an empty password.
        """

    @abc.abstractmethod
    def set_email(self, username, email):
        """Replace the e-mail address (``None`` removes it).

        Raises :class:`UserNotFound`, :class:`AccountsManagedElsewhere`, or
        :class:`ValueError` for an unusable address.
        """

    @abc.abstractmethod
    def set_enabled(self, username, enabled):
        """Enable or disable the account; a disabled one cannot authenticate.

        Raises :class:`UserNotFound`, or :class:`AccountsManagedElsewhere`
        when enabling is decided elsewhere (a directory).
        """

    @abc.abstractmethod
    def delete_user(self, username):
        """Delete the account; return True if there was one, False otherwise.

        Raises :class:`AccountsManagedElsewhere` when this server may not.
        """

    # -- optional: administration and import (syncserver-admin) --------------

    def list_users(self, after=None, limit=100):
        """Return up to ``limit`` accounts (:class:`User`) ordered by username.

        Only usernames greater than ``after`` are listed, so that a caller
        pages through a large directory with the last username it got.
        Optional: raises :class:`~syncserver.errors.NotSupported`.
        """
        raise NotSupported(f"{type(self).__name__} cannot list its accounts")

    def count_users(self):
        """Return the number of accounts. The default pages through :meth:`list_users`."""
        count, after = 0, None
        while True:
            page = self.list_users(after=after, limit=1000)
            count += len(page)
            if len(page) < 1000:
                return count
            after = page[-1].username

    def import_user(self, username, password_hash, email=None, userid=None, enabled=True):
        """Add an account with an already-hashed password (``syncserver-admin import``).

        ``userid`` asks for that user id (so imported records stay attached);
        None assigns a new one. Works whatever ``auth.allow_new_users`` says.
        Returns the :class:`User`. Raises :class:`UserExists`,
        :class:`UserIdTaken` when ``userid`` belongs to another account,
        :class:`ValueError` for invalid values. Optional: raises
        :class:`~syncserver.errors.NotSupported`.
        """
        raise NotSupported(f"{type(self).__name__} cannot import accounts")

    def get_password_hash(self, username):
        """The stored password hash (``syncserver-admin export``), or ``None`` for an unknown
        user. Optional: raises :class:`~syncserver.errors.NotSupported`."""
        raise NotSupported(f"{type(self).__name__} does not reveal password hashes")

    def close(self):
        """Release connections and pools. The default does nothing."""
