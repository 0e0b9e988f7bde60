"""Brute-force protection for HTTP Basic logins: who is refused, and for how long.

Three failure counters are kept per failed login (see
:mod:`syncserver.throttle` for counting and waiting):

``login-pair`` (account *and* address)
    The strict one. From ``throttle.delay_after`` failures on, the address
    waits 1, 2, 4 ... seconds between guesses at this account; from
    ``throttle.max_failures`` on it is refused for ``throttle.lockout_seconds``.
    The owner's devices elsewhere are not affected.
``login-address`` (address, any account)
    Catches one address trying many accounts (password spraying):
    ``throttle.address_max_failures``, then ``throttle.lockout_seconds``.
    Not kept for ``throttle.address_exempt`` (loopback by default).
``login-account`` (account, any address)
    Catches guesses at one account spread over many addresses:
    ``throttle.account_max_failures``, then a *short*
    ``throttle.account_lockout_seconds``, and **never applied to a trusted
    address**: one from which this account logged in successfully in the
    last ``throttle.trusted_seconds``. So an attacker who knows a username
    cannot lock its owner's devices out; the owner is only slowed on a new
    address, and then for a minute at a time.

A success clears the pair's counter (only when this process knows it has
failures: no write on the hot path) and marks the pair trusted (one write
per pair and process per ``TRUST_REFRESH_SECONDS``, not per request).

Refusals are 429 Too Many Requests with ``Retry-After``; the password is
not checked at all. Sync 1.1 clients take a 401 for "wrong password" and
ask their user to type it again (more failures, a locked-out owner), while
an unknown status is a transient error they retry later. Each refusal is
logged on ``syncserver.security`` with the username and address.
"""

import ipaddress
import logging
import math

from syncserver import metrics
from syncserver.errors import ConfigError
from syncserver.throttle import Policy, Throttle

security_log = logging.getLogger("syncserver.security")

PAIR, ADDRESS, ACCOUNT, TRUSTED = "login-pair", "login-address", "login-account", "login-trusted"
#: The scope for password-reset codes (the reset controller uses the generic API).
RESET_CODE = "reset-code"
#: Passwords typed into the delete-account page: counted like logins.
DELETE_ACCOUNT = "delete-account"
#: Reset-link mails per account: one per interval, and a few per hour (see ResetMailLimit).
RESET_MAIL_SPACING, RESET_MAIL_HOURLY = "reset-mail-spacing", "reset-mail-hourly"

#: Why a login is refused, as the security log says it, by scope.
_REASONS = {PAIR: "account and address", ADDRESS: "address", ACCOUNT: "account"}
_SCOPES = {reason: scope for scope, reason in _REASONS.items()}

#: Addresses whose exemption is remembered per process (the memory is emptied when full).
MAX_EXEMPT_CACHE = 4096
#: Pairs let through unchecked, remembered per process (the memory is emptied when full).
MAX_LET_THROUGH = 10_000
#: A trusted pair is rewritten at most this often per process (its lifetime is much longer).
TRUST_REFRESH_SECONDS = 3600


class LoginThrottle:
    """Decides whether a login attempt is refused, and records its outcome.

    ``throttle`` is the shared :class:`~syncserver.throttle.Throttle` (also
    reachable as ``.throttle`` for the reset-code scope).
    """

    def __init__(self, throttle, trusted_seconds, address_exempt=()):
        self.throttle = throttle
        self.trusted_seconds = trusted_seconds
        #: Networks whose addresses are never locked out as a whole (see :meth:`_exempt`).
        self.address_exempt = tuple(address_exempt)
        #: address -> exempt? (parsing an address costs more than the rest of a check).
        self._exempt_cache = {}
        #: pair -> until when (epoch seconds) it is let through unchecked (see :meth:`check`).
        self._let_through = {}
        #: Failed logins counted by this process: a check that overlapped one remembers nothing.
        self._failures_seen = 0

    def _exempt(self, address):
        """True for an address the per-address counter leaves alone.

        Loopback by default: behind a reverse proxy that is not in
        ``global.trusted_proxies`` every client has the proxy's address, and
        one lockout of it would shut everybody out. The per-account counters
        still apply to such addresses.
        """
        if not self.address_exempt:
            return False
        known = self._exempt_cache.get(address)
        if known is not None:
            return known
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            exempt = False
        else:
            exempt = any(parsed in network for network in self.address_exempt)
        if len(self._exempt_cache) >= MAX_EXEMPT_CACHE:
            self._exempt_cache.clear()
        self._exempt_cache[address] = exempt
        return exempt

    @classmethod
    def from_settings(cls, settings, databases=None):
        """Build from :class:`syncserver.settings.ThrottleSettings`; None when it is off.

        ``databases`` (the server's :class:`~syncserver.db.DatabaseRegistry`)
        shares the SQL counters' database with the other backends on its URL.
        """
        if not settings.enabled:
            return None
        if settings.redis_url:
            try:
                from syncserver.throttle.redis_store import RedisCounterStore
            except ImportError as error:
                raise ConfigError(f"throttle.redis_url needs redis-py: pip install "
                                  f"'syncserver[redis]' ({error}).") from None
            store = RedisCounterStore.from_url(settings.redis_url)
        else:
            from syncserver.throttle.sql_store import SQLCounterStore
            store = SQLCounterStore.from_settings(settings, databases)
        return cls(Throttle(store, policies(settings), cache_seconds=settings.cache_seconds),
                   settings.trusted_seconds, settings.address_exempt)

    def check(self, username, address):
        """Seconds this attempt must wait, with the reason; ``(0, None)`` lets it through.

        A pair let through is let through again without a look at its
        counters until the oldest of them is due to be read again (the
        throttle's ``cache_seconds``), unless a login of this process failed
        meanwhile: a sync client's every request checks its pair, and that
        look cost a tenth of a small request's CPU.
        """
        throttle = self.throttle
        pair = _pair(username, address)
        if self._let_through.get(pair, 0) > throttle.clock():
            return 0, None
        generation = self._failures_seen
        counters, as_of = throttle.counters_as_of(
            [(PAIR, pair), (ADDRESS, address), (ACCOUNT, username), (TRUSTED, pair)])
        waits = [(throttle.wait(PAIR, counters.get((PAIR, pair))), _REASONS[PAIR])]
        if not self._exempt(address):
            waits.append((throttle.wait(ADDRESS, counters.get((ADDRESS, address))),
                          _REASONS[ADDRESS]))
        if (TRUSTED, pair) not in counters:
            waits.append((throttle.wait(ACCOUNT, counters.get((ACCOUNT, username))),
                          _REASONS[ACCOUNT]))
        seconds, reason = max(waits, key=lambda item: item[0])
        if seconds <= 0:
            # A wait of 0 stays 0 as time passes; only a failure, or a count of
            # another process's failures read later, can change it.
            if generation == self._failures_seen:
                if len(self._let_through) >= MAX_LET_THROUGH:
                    self._let_through.clear()
                self._let_through[pair] = as_of + throttle.cache_seconds
            return 0, None
        return math.ceil(seconds), reason

    def refused(self, username, address, seconds, reason):
        """Log a refusal as a security event (never with the password)."""
        metrics.recorder.throttle_refusal(_SCOPES.get(reason, "login"))
        security_log.warning(
            "LoginThrottled: user %r from %s refused for %d s (too many failures per %s)",
            username, address, seconds, reason)

    def failed(self, username, address):
        """Count a wrong password (or unknown or disabled account)."""
        self._failures_seen += 1
        self._let_through.clear()
        throttle = self.throttle
        throttle.record_failure(PAIR, _pair(username, address))
        if not self._exempt(address):
            throttle.record_failure(ADDRESS, address)
        throttle.record_failure(ACCOUNT, username)

    def succeeded(self, username, address):
        """Clear the pair's failures and keep the address trusted for this account."""
        throttle = self.throttle
        pair = _pair(username, address)
        if throttle.cached(PAIR, pair) is not None:
            throttle.reset(PAIR, pair)
        trusted = throttle.cached(TRUSTED, pair)
        now = throttle.clock()
        if trusted is None or now - trusted.updated_at >= TRUST_REFRESH_SECONDS:
            # Counted like a failure, but in a scope whose only meaning is "it exists".
            throttle.record_failure(TRUSTED, pair, lifetime=self.trusted_seconds)

    def is_healthy(self):
        """True when the counter store answers (the heartbeat's question)."""
        return self.throttle.store.is_healthy()

    def close(self):
        self.throttle.close()


def policies(settings):
    """The :class:`Policy` of every scope, from ``throttle.*`` settings."""
    window = settings.window_seconds
    return {
        PAIR: Policy(max_failures=settings.max_failures, lockout_seconds=settings.lockout_seconds,
                     window_seconds=window, delay_after=settings.delay_after,
                     max_delay_seconds=settings.max_delay_seconds),
        ADDRESS: Policy(max_failures=settings.address_max_failures,
                        lockout_seconds=settings.lockout_seconds, window_seconds=window),
        ACCOUNT: Policy(max_failures=settings.account_max_failures,
                        lockout_seconds=settings.account_lockout_seconds, window_seconds=window),
        # Only its existence matters; "failures" are successful logins here.
        TRUSTED: Policy(max_failures=2 ** 62, lockout_seconds=0,
                        window_seconds=settings.trusted_seconds),
        DELETE_ACCOUNT: Policy(
            max_failures=settings.max_failures, lockout_seconds=settings.lockout_seconds,
            window_seconds=window, delay_after=settings.delay_after,
            max_delay_seconds=settings.max_delay_seconds),
        RESET_CODE: Policy(max_failures=settings.reset_code_max_failures,
                           lockout_seconds=settings.lockout_seconds, window_seconds=window,
                           # A mistyped code may be retried at once; a third miss waits.
                           delay_after=2, max_delay_seconds=settings.max_delay_seconds),
        # Here a "failure" is a mail sent: the first one waits out the interval.
        RESET_MAIL_SPACING: Policy(max_failures=1,
                                   lockout_seconds=settings.reset_mail_interval_seconds,
                                   window_seconds=max(1, settings.reset_mail_interval_seconds)),
        RESET_MAIL_HOURLY: Policy(max_failures=settings.reset_mail_max_per_hour,
                                  lockout_seconds=3600, window_seconds=3600),
    }


def _pair(username, address):
    return f"{username}|{address}"


class GuessThrottle:
    """One scope of guesses (reset codes, delete-account passwords) for the HTML flows.

    Gives the ``check(key)`` / ``failure(key)`` / ``success(key)`` shape that
    :class:`syncserver.accounts.password_reset.PasswordReset` and the pages use,
    counted in ``scope`` (:data:`RESET_CODE` or :data:`DELETE_ACCOUNT`) of the
    shared :class:`Throttle`.
    """

    def __init__(self, throttle, scope):
        self.throttle = throttle
        self.scope = scope

    def check(self, key):
        seconds = self.throttle.check(self.scope, key)
        if seconds > 0:
            metrics.recorder.throttle_refusal(self.scope)
            security_log.warning("GuessThrottled: %r refused for %d s", key, math.ceil(seconds))
            return False
        return True

    def failure(self, key):
        self.throttle.record_failure(self.scope, key)

    def success(self, key):
        self.throttle.reset(self.scope, key)


class ResetMailLimit:
    """How often one account may be mailed a reset link, in the shared :class:`Throttle`.

    Stops anyone who knows a username from flooding its owner's mailbox
    (and our SMTP server's reputation). Counted per account, whatever the
    address, in :data:`RESET_MAIL_SPACING` and :data:`RESET_MAIL_HOURLY`.
    """

    def __init__(self, throttle):
        self.throttle = throttle

    def wait(self, username):
        """Seconds before ``username`` may be mailed again (0: now)."""
        return math.ceil(max(self.throttle.check(RESET_MAIL_SPACING, username),
                             self.throttle.check(RESET_MAIL_HOURLY, username)))

    def record(self, username):
        """Count a mail about to be sent."""
        self.throttle.record_failure(RESET_MAIL_SPACING, username)
        self.throttle.record_failure(RESET_MAIL_HOURLY, username)
