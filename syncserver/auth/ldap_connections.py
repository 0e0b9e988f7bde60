"""Connections to an LDAP directory: how they are opened, pooled and how failures read.

Why a module of its own: the LDAP authentication backend
(:mod:`syncserver.auth.ldap`) needs three kinds of connections and one
rule for errors, and none of it is about accounts.

- :class:`DirectoryConnector` opens one connection with the configured
  URI, TLS and timeouts, and binds it.
- :class:`ConnectionPool` keeps a few connections bound as the *service
  account* (or anonymous) for searches. They are never rebound as anyone
  else, so a connection taken from the pool always searches with the same
  rights. A connection older than ``lifetime`` is closed instead of reused;
  one that fails with "server down" is dropped and the operation is tried
  once more on a fresh connection (the directory may have restarted).
- User binds (password checks) and admin writes use short-lived connections
  from :meth:`DirectoryConnector.open`, closed right after.

:func:`directory_errors` turns "the directory is not there or too slow"
into :class:`~syncserver.auth.AuthUnavailable` (a 503 upstream). The
messages come from libldap and never hold a password.
"""

import collections
import contextlib
import logging
import threading
import time

import ldap

from syncserver.auth import AuthUnavailable

logger = logging.getLogger(__name__)

#: libldap errors that mean "cannot reach or use the directory right now".
UNAVAILABLE_ERRORS = (
    ldap.SERVER_DOWN,
    ldap.TIMEOUT,
    ldap.CONNECT_ERROR,
    ldap.TIMELIMIT_EXCEEDED,
    ldap.BUSY,
    ldap.UNAVAILABLE,
)


def describe(error):
    """One line from a python-ldap error: its description and server info, no values."""
    details = error.args[0] if error.args and isinstance(error.args[0], dict) else {}
    text = details.get("desc") or type(error).__name__
    if details.get("info"):
        text += f" ({details['info']})"
    return text


@contextlib.contextmanager
def directory_errors(action):
    """Re-raise unreachable-directory errors as :class:`AuthUnavailable` naming ``action``."""
    try:
        yield
    except UNAVAILABLE_ERRORS as error:
        raise AuthUnavailable(f"LDAP directory unavailable while {action}: "
                              f"{describe(error)}") from error


class DirectoryConnector:
    """Opens connections to ``uri`` with the TLS and timeout settings of the server."""

    def __init__(self, uri, timeout=5, starttls=False, ca_file=None):
        self.uri = uri
        self.timeout = timeout
        self.starttls = starttls
        self.ca_file = ca_file

    @property
    def uses_tls(self):
        """Whether any URI is ``ldaps://`` or StartTLS is on (``ldap://a ldaps://b`` counts)."""
        return self.starttls or any(part.startswith("ldaps://") for part in self.uri.split())

    @staticmethod
    def set_tls_options(connection, ca_file):
        """Verify the certificate (against ``ca_file`` when given, else the system's CAs)
        and host name, whatever /etc/ldap/ldap.conf or LDAPTLS_* say.

        The options are the connection's own; libldap applies them only to a TLS
        context made after them, so ``OPT_X_TLS_NEWCTX`` comes last. Raises
        ``ValueError`` when libldap cannot load ``ca_file``.
        """
        if ca_file:
            connection.set_option(ldap.OPT_X_TLS_CACERTFILE, ca_file)
        connection.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
        connection.set_option(ldap.OPT_X_TLS_NEWCTX, 0)

    def open(self, who=None, password=None):
        """A new connection, bound as ``who`` (anonymous when None).

        Raises ``ldap.INVALID_CREDENTIALS`` for a wrong password and the
        errors of :data:`UNAVAILABLE_ERRORS` when the directory cannot answer.
        """
        connection = ldap.initialize(self.uri)
        try:
            connection.set_option(ldap.OPT_PROTOCOL_VERSION, ldap.VERSION3)
            connection.set_option(ldap.OPT_REFERRALS, 0)
            connection.set_option(ldap.OPT_NETWORK_TIMEOUT, self.timeout)
            connection.set_option(ldap.OPT_TIMEOUT, self.timeout)
            # python-ldap's synchronous calls wait this long for each result.
            connection.timeout = self.timeout
            if self.uses_tls:
                try:
                    self.set_tls_options(connection, self.ca_file)
                except ValueError as error:
                    # The CA file was readable at start-up: it was removed or broken since.
                    raise ldap.CONNECT_ERROR({"desc": "TLS setup failed",
                                              "info": f"auth.ldap_ca_file: {error}"}) from error
            if self.starttls:
                try:
                    connection.start_tls_s()
                except (ldap.SERVER_DOWN, ldap.TIMEOUT):
                    raise
                except ldap.LDAPError as error:
                    # Never fall back to clear text: the directory is unusable as configured.
                    raise ldap.CONNECT_ERROR({"desc": "StartTLS failed",
                                              "info": describe(error)}) from error
            if who is not None:
                connection.simple_bind_s(who, password)
            return connection
        except BaseException:
            close_quietly(connection)
            raise

    @contextlib.contextmanager
    def bound(self, who, password):
        """A short-lived connection bound as ``who``, closed on exit."""
        connection = self.open(who, password)
        try:
            yield connection
        finally:
            close_quietly(connection)


def close_quietly(connection):
    with contextlib.suppress(ldap.LDAPError):
        connection.unbind_s()


class ConnectionPool:
    """Thread-safe pool of connections bound as one identity (the service account).

    Keeps at most ``size`` idle connections; more threads at once get extra
    connections that are closed after use, so nobody waits for the pool.
    """

    def __init__(self, connector, who=None, password=None, size=5, lifetime=600,
                 clock=time.monotonic):
        self.connector = connector
        self._who = who
        self._password = password
        self.size = size
        self.lifetime = lifetime
        self._clock = clock
        self._lock = threading.Lock()
        #: (opened_at, connection), most recently returned last.
        self._idle = collections.deque()

    def run(self, operation):
        """Return ``operation(connection)``; retried once on a fresh connection if the
        pooled one finds the server gone. Directory errors propagate as python-ldap's."""
        opened_at, connection = self._take()
        try:
            result = operation(connection)
        except ldap.SERVER_DOWN:
            close_quietly(connection)
            if opened_at is None:
                raise  # A brand-new connection failed: the directory is down.
            logger.info("pooled LDAP connection lost; retrying on a new one")
            opened_at, connection = None, self._open()
            try:
                result = operation(connection)
            except BaseException:
                close_quietly(connection)
                raise
        except UNAVAILABLE_ERRORS:
            close_quietly(connection)
            raise
        except BaseException:
            # An LDAP result error (no such object, ...) leaves the connection usable.
            self._give_back(opened_at, connection)
            raise
        self._give_back(opened_at, connection)
        return result

    def _open(self):
        return self.connector.open(self._who, self._password)

    def _take(self):
        """An idle connection young enough to reuse, or a new one (opened_at None)."""
        now = self._clock()
        stale = []
        taken = None
        with self._lock:
            while self._idle:
                opened_at, connection = self._idle.pop()
                if now - opened_at < self.lifetime:
                    taken = (opened_at, connection)
                    break
                stale.append(connection)
        for connection in stale:
            close_quietly(connection)
        if taken is not None:
            return taken
        return None, self._open()

    def _give_back(self, opened_at, connection):
        if opened_at is None:
            opened_at = self._clock()
        with self._lock:
            if len(self._idle) < self.size:
                self._idle.append((opened_at, connection))
                return
        close_quietly(connection)

    def idle_count(self):
        with self._lock:
            return len(self._idle)

    def close(self):
        """Close every idle connection (connections in use close when returned)."""
        with self._lock:
            idle, self._idle = list(self._idle), collections.deque()
        for _, connection in idle:
            close_quietly(connection)
