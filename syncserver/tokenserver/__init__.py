"""The tokenserver (Sync 1.5): who may use the storage nodes, and with which token.

Verifies Mozilla-accounts OAuth access tokens (:mod:`.oauth`), keeps the
Sync users and their node assignments (:mod:`.users`, :mod:`.users_sql`)
under the server's policy (:mod:`.policy`), and issues the Hawk
credentials that storage nodes check (see
``../shared/reference/sync15-reference.md`` §1).
"""


def sync15_storage_user_id(uid):
    """The storage backends' user id of the Sync 1.5 uid ``uid``: ``-uid``.

    Sync 1.1 accounts have positive user ids in the same storage; 1.5 uids
    count from 1 in their own table, so they are stored negated and the two
    never meet. Every caller (the 1.5 storage controller, account deletion)
    goes through this one function.
    """
    if isinstance(uid, bool) or not isinstance(uid, int) or uid < 1:
        raise ValueError(f"a Sync 1.5 uid is a whole number from 1, not {uid!r}")
    return -uid
