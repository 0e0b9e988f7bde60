"""The tokenserver (Sync 1.5): who may use the storage nodes, and with which token.

Verifies Mozilla-accounts OAuth access tokens (:mod:`.oauth`), keeps the
Sync users and their node assignments (:mod:`.users`, :mod:`.users_sql`)
under the server's policy (:mod:`.policy`), and issues the Hawk
credentials that storage nodes check (see
``../shared/reference/sync15-reference.md`` §1).
"""

