"""Remembering verified logins in front of any authentication backend, safely across processes.

Why a wrapper: a memory-hard password hash (argon2id) or an LDAP bind is
deliberately slow, and every Sync 1.1 request carries Basic credentials. So
the server puts :class:`CachedAuth` in front of whatever backend is
configured (SQL, LDAP, a plugin): it answers repeated good credentials from
a per-process :class:`~syncserver.auth.credentials_cache.CredentialsCache`,
and a backend only has to look users up and check passwords.

A change made through the server (password set, account disabled or
deleted) must stop the old credentials everywhere:

- in this process at once (the cache forgets the user);
- in every other process **on its next request** when Redis is configured
  (``auth.redis_url``): each login is remembered with the user's credential
  version (:mod:`syncserver.auth.credential_versions`) and is served from
  memory only while Redis still holds that version;
- otherwise (or while Redis does not answer) within
  ``changes_poll_seconds`` (1 s): every process reads the SQL change feed
  (:mod:`syncserver.auth.credential_changes`) at most that often.

Changes made behind the server's back (directly in an LDAP directory) are
noticed when the remembered login expires (``auth.credentials_cache_seconds``).
"""

import logging
import threading
import time

from syncserver.auth import AuthBackend, AuthUnavailable
from syncserver.auth.credential_versions import CredentialVersionsUnavailable

logger = logging.getLogger("syncserver.auth")

#: After Redis failed, how long to go without it (and between two warnings).
REDIS_RETRY_SECONDS = 10


class CachedAuth(AuthBackend):
    """``backend`` with its good logins remembered; implements the same interface.

    ``cache`` is a :class:`~syncserver.auth.credentials_cache.CredentialsCache`
    (``seconds=0`` remembers nothing but still announces changes);
    ``versions`` a :class:`~syncserver.auth.credential_versions.CredentialVersions`
    or None; ``feed`` a :class:`~syncserver.auth.credential_changes.ChangeFeed`
    or None. ``clock`` (monotonic seconds) is for tests.
    """

    def __init__(self, backend, cache, versions=None, feed=None, clock=time.monotonic):
        self.backend = backend
        self.cache = cache
        self.versions = versions
        self.feed = feed
        self._clock = clock
        #: Bumped whenever credentials are forgotten: a check that overlapped it is not kept.
        self._forget_generation = 0
        self._redis_down_until = 0.0
        self._redis_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings):
        raise TypeError("CachedAuth wraps a backend: the server builds it "
                        "(syncserver.composition), it is not named in auth.backend")

    @property
    def manages_accounts(self):
        return self.backend.manages_accounts

    # --- logins -----------------------------------------------------------------

    def authenticate(self, username, password):
        cache = self.cache
        if not cache.enabled:
            return self.backend.authenticate(username, password)
        if self.feed is not None:
            self.feed.poll(self._forget)
        version = self._current_version(username)
        remembered = cache.lookup(username, password)
        if remembered is not None:
            user, remembered_version = remembered
            if version is None or version == remembered_version:
                return user
        generation = self._forget_generation
        user = self.backend.authenticate(username, password)
        if user is not None and generation == self._forget_generation:
            cache.remember(username, password, (user, version))
        return user

    def _current_version(self, username):
        """The user's credential version in Redis; None without Redis or while it is down."""
        if self.versions is None or self._clock() < self._redis_down_until:
            return None
        try:
            return self.versions.current(username)
        except CredentialVersionsUnavailable as error:
            self._redis_failed(error)
            return None

    def _redis_failed(self, error):
        with self._redis_lock:
            if self._clock() < self._redis_down_until:
                return
            self._redis_down_until = self._clock() + REDIS_RETRY_SECONDS
        bound = ("within a second (the SQL change feed)" if self.feed is not None
                 else "when remembered logins expire")
        logger.warning("credential versions unavailable, trying again in %d s; changes made "
                       "elsewhere are seen %s meanwhile: %s", REDIS_RETRY_SECONDS, bound, error)

    def _forget(self, username):
        self._forget_generation += 1
        self.cache.forget_user(username)

    def _credentials_changed(self, username):
        """Forget ``username``'s logins here and make every other process forget them.

        Called after the backend made (or may have made) the change. Raises
        :class:`~syncserver.auth.AuthUnavailable` when no other process can
        be told: they would go on accepting the old credentials.
        """
        self._forget(username)
        told = False
        if self.versions is not None:
            try:
                self.versions.change(username)
                told = True
            except CredentialVersionsUnavailable as error:
                self._redis_failed(error)
        if self.feed is not None:
            try:
                self.feed.record(username)
                told = True
            except AuthUnavailable as error:
                logger.error("could not record that the credentials of %r changed: %s",
                             username, error)
                if not told:
                    raise
        elif self.versions is not None and not told:
            raise AuthUnavailable("could not tell the other processes that the credentials "
                                  f"of {username!r} changed (Redis did not answer)")

    # --- account changes: the backend does them, then everyone forgets -----------

    def set_password(self, username, new_password):
        try:
            self.backend.set_password(username, new_password)
        finally:
            self._credentials_changed(username)

    def set_enabled(self, username, enabled):
        try:
            self.backend.set_enabled(username, enabled)
        finally:
            if not enabled:
                self._credentials_changed(username)
            else:
                self._forget(username)

    def delete_user(self, username):
        try:
            return self.backend.delete_user(username)
        finally:
            self._credentials_changed(username)

    def set_email(self, username, email):
        try:
            self.backend.set_email(username, email)
        finally:
            # Remembered logins carry the old address: this process forgets them at
            # once; other processes keep showing the old one until they expire.
            self._forget(username)

    # --- everything else is the backend's ------------------------------------------

    def is_healthy(self):
        return self.backend.is_healthy()

    def optional_dependencies(self):
        checks = dict(self.backend.optional_dependencies())
        if self.versions is not None:
            checks["credential_versions"] = self.versions.is_healthy
        return checks

    def get_user(self, username):
        return self.backend.get_user(username)

    def create_user(self, username, password, email):
        return self.backend.create_user(username, password, email)

    def import_user(self, username, password_hash, email=None, userid=None, enabled=True):
        return self.backend.import_user(username, password_hash, email=email, userid=userid,
                                        enabled=enabled)

    def get_password_hash(self, username):
        return self.backend.get_password_hash(username)

    def list_users(self, after=None, limit=100):
        return self.backend.list_users(after=after, limit=limit)

    def count_users(self):
        return self.backend.count_users()

    def close(self):
        self.backend.close()
        if self.versions is not None:
            self.versions.close()
