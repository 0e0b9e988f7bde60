"""Deleting an account: its records, its credentials, its node and its reset code, in one order.

Used by every way of deleting an account (``DELETE /user/1.0/<u>``, the
delete-account page, ``syncserver-admin user delete``), so that none of them
forgets a trace. The records go first: should the account's deletion then
fail, the account is still there to try again with, and the storage refuses
writes to a deleted user, so nothing comes back meanwhile.
"""

import logging

security_log = logging.getLogger("syncserver.security")


def delete_account(user, auth, storage, nodes=None, reset_codes=None):
    """Delete ``user`` (a :class:`~syncserver.auth.User`) everywhere; True if the account existed.

    ``nodes`` (a :class:`~syncserver.nodes.NodeBackend`) and ``reset_codes``
    (a :class:`~syncserver.accounts.reset_codes.ResetCodeStore`) are None when
    not configured. Raises what the backends raise
    (:class:`~syncserver.errors.BackendUnavailable`,
    :class:`~syncserver.auth.AccountsManagedElsewhere`).
    """
    storage.delete_user(user.user_id)
    deleted = auth.delete_user(user.username)
    if nodes is not None:
        nodes.release_user(user.username)
    if reset_codes is not None:
        reset_codes.clear(user.user_id)
    return deleted
