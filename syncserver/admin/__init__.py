"""``syncserver-admin``: the operator's command line (users, nodes, data, checks).

:mod:`syncserver.admin.cli` parses the command line; each subcommand lives in
a module of this package that exposes ``register(subparsers)``, and its
handlers receive an :class:`~syncserver.admin.context.AdminContext`.
"""
