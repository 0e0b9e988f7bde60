"""Who may use this server's Sync 1.5 storage: new accounts, an allow-list, a cap on users.

Three rules, all optional (``tokenserver.*``):

- ``allow_new_users``: when false, an account that has never had a token
  here is refused; accounts that have one keep working (reference §1.7).
- ``allowed_fxa_uids``: when set, only these Mozilla-account ids get tokens,
  old accounts included, so taking an id off the list cuts that account off.
- ``max_users``: when above 0, a new account is refused once that many
  accounts have tokens here. The SQL backend counts under a lock, so
  racing first requests cannot overshoot it.

Why account ids and not e-mail addresses or domains: the tokenserver never
learns the address. The access token Firefox sends is scoped to
``https://identity.mozilla.com/apps/oldsync`` only; its claims (``sub``,
``scope``, ``client_id``, ``fxa-generation``, ``exp``...) and FxA's
``/v1/verify`` answer (``user``, ``client_id``, ``scope``, ``generation``)
carry no e-mail, and FxA's profile server answers only tokens holding the
``profile`` scope, which this token does not have. An operator learns an
account's id from the refusal in the security log (``TokenRefused ... fxa uid
...``) or from ``syncserver-admin token-user list``.

Every refusal is an :class:`~syncserver.tokenserver.errors.AccessRefused`:
401 ``new-users-disabled``, as the protocol documents it, whatever the rule.
"""

import dataclasses

from syncserver.tokenserver.errors import AccessRefused


@dataclasses.dataclass(frozen=True)
class AccessPolicy:
    """The three rules above; the defaults let everyone in."""

    allow_new_users: bool = True
    #: Mozilla-account ids (JWT ``sub``) allowed; empty allows every account.
    allowed_fxa_uids: frozenset = frozenset()
    #: Most accounts with tokens here; 0 for no cap.
    max_users: int = 0

    @classmethod
    def from_settings(cls, settings):
        """From ``tokenserver.*`` (a :class:`syncserver.settings.TokenserverSettings`)."""
        return cls(allow_new_users=settings.allow_new_users,
                   allowed_fxa_uids=frozenset(settings.allowed_fxa_uids),
                   max_users=settings.max_users)

    @property
    def counts_users(self):
        """True when a new account needs the number of accounts (``max_users`` is set)."""
        return self.max_users > 0

    def check_account(self, fxa_uid):
        """Every request: the allow-list. Raises :class:`AccessRefused`."""
        if self.allowed_fxa_uids and fxa_uid not in self.allowed_fxa_uids:
            raise AccessRefused("the account is not in tokenserver.allowed_fxa_uids")

    def check_new_account(self, count_accounts):
        """An account with no rows yet; ``count_accounts()`` is called only with a cap."""
        if not self.allow_new_users:
            raise AccessRefused("new accounts are closed (tokenserver.allow_new_users = false)")
        if self.counts_users and count_accounts() >= self.max_users:
            raise AccessRefused(f"the server has its {self.max_users} accounts "
                                "(tokenserver.max_users)")
