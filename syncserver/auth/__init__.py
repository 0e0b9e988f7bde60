"""The authentication plugin interface.

Every authentication backend (the bundled SQL one, LDAP later, a user's own
class) implements :class:`AuthBackend`. The User API controller and the HTTP
Basic-auth check talk only to this interface.

Usernames reaching a backend are already validated: 1 to 32 characters of
``[a-zA-Z0-9._-]`` (e-mail addresses typed by people are turned into their
Sync hash by :func:`syncserver.auth.usernames.extract_username` first).
Passwords are ``str`` (decoded UTF-8) and may contain any character.
"""

import abc
import dataclasses
from collections.abc import Sequence

from syncserver.errors import BackendUnavailable


class AuthError(Exception):
    """Base class of every error an authentication backend raises on purpose."""


class AuthUnavailable(AuthError, BackendUnavailable):
    """The database or directory behind the backend did not answer (503)."""

    service = "auth"


class RegistrationClosed(AuthUnavailable):
    """``auth.allow_new_users`` is false; new accounts are refused (503)."""


class UserExists(AuthError):
    """An account with that username already exists (400, code 4)."""


class UserIdTaken(AuthError, ValueError):
    """An import asked for a user id that belongs to another account."""


class UserNotFound(AuthError):
    """No account has that username."""


class AccountsManagedElsewhere(AuthError):
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


class AuthBackend(abc.ABC):
    """What an authentication backend must provide.

    A backend class is named in ``auth.backend`` (alias or dotted path) and
    built with :meth:`from_settings`. Every method may raise
    :class:`AuthUnavailable` when its service is down; a wrong password or a
    disabled account is never an exception, just ``None``.
    """

    #: Extra ``auth.*`` keys this backend reads beyond the core ones.
    extra_settings: Sequence[str] = ()

    #: False when accounts cannot be created, changed or deleted through this
    #: server (a read-only directory): the User API then refuses those
    #: requests before touching anything, and the write methods raise
    #: :class:`AccountsManagedElsewhere`.
    manages_accounts: bool = True

    @classmethod
    @abc.abstractmethod
    def from_settings(cls, settings):
        """Build the backend from a :class:`syncserver.settings.AuthSettings`."""

    @abc.abstractmethod
    def is_healthy(self):
        """Run a trivial real query; return True, or False when the service is down."""

    @abc.abstractmethod
    def get_user(self, username):
        """Return the :class:`User` (enabled or not) or ``None`` if there is none."""

    @abc.abstractmethod
    def create_user(self, username, password, email):
        """Create an enabled account and return its :class:`User`.

        Raises :class:`UserExists` if the username is taken and
        :class:`RegistrationClosed` when new accounts are not allowed.
        """

    @abc.abstractmethod
    def authenticate(self, username, password):
        """Return the :class:`User` if the password is right and the account enabled, else ``None``.

        Called on every authenticated request: a backend must answer repeated
        good credentials without rerunning a slow password hash (see
        :class:`syncserver.auth.credentials_cache.CredentialsCache`).
        """

    @abc.abstractmethod
    def set_password(self, username, new_password):
        """Replace the password. Credentials cached for the old one stop working.

        Raises :class:`UserNotFound`.
        """

    @abc.abstractmethod
    def set_email(self, username, email):
        """Replace the e-mail address. Raises :class:`UserNotFound`."""

    @abc.abstractmethod
    def set_enabled(self, username, enabled):
        """Enable or disable the account; a disabled one cannot authenticate.

        Raises :class:`UserNotFound`.
        """

    @abc.abstractmethod
    def delete_user(self, username):
        """Delete the account; return True if there was one. Its credentials stop working."""

    # -- optional: administration (syncserver-admin) -------------------------

    def list_users(self, after=None, limit=100):
        """Return up to ``limit`` accounts (:class:`User`) ordered by username.

        Only usernames greater than ``after`` are listed, so that a caller
        pages through a large directory with the last username it got.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot list its accounts")

    def count_users(self):
        """Return the number of accounts. The default pages through :meth:`list_users`."""
        count, after = 0, None
        while True:
            page = self.list_users(after=after, limit=1000)
            count += len(page)
            if len(page) < 1000:
                return count
            after = page[-1].username

    def close(self):
        """Release connections and pools. The default does nothing."""
