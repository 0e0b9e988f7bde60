"""The tokenserver (Sync 1.5): who may use the storage nodes, and with which token.

Verifies Mozilla-accounts OAuth access tokens, keeps the Sync users and
their node assignments, and issues the Hawk credentials that storage nodes
check (see ``../shared/reference/sync15-reference.md`` §1).
"""
