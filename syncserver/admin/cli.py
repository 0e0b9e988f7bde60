"""Command-line entry point of ``syncserver-admin``.

Every subcommand module registers its parsers through ``register(subparsers)``
and sets ``handler=function(context, args) -> int`` as the parser default.
Errors an operator can act on (:class:`AdminError`, configuration errors, a
backend that is down) end the command with one sentence and exit code 1,
never a traceback.
"""

import argparse
import importlib
import os
import sys

from syncserver.admin.context import AdminContext, AdminError
from syncserver.errors import BackendUnavailable, ConfigError

#: Subcommand modules of :mod:`syncserver.admin`, in the order ``--help`` lists them.
COMMAND_MODULES = ("nodes", "transfer")

DEFAULT_CONFIG = "production.ini"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="syncserver-admin",
        description="Manage a syncserver from the shell, with the server's own configuration file.")
    parser.add_argument(
        "-c", "--config", default=os.environ.get("SYNCSERVER_INI", DEFAULT_CONFIG),
        help="the server's ini file (default: $SYNCSERVER_INI or production.ini)")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars, only results and errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"syncserver.admin.{name}").register(subparsers)
    return parser


def main(argv=None, stdout=None, stderr=None):
    """Run one command; returns the process exit code."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    args = build_parser().parse_args(argv)
    context = AdminContext(args.config, stdout=stdout, stderr=stderr, quiet=args.quiet)
    try:
        return args.handler(context, args) or 0
    except (AdminError, ConfigError, BackendUnavailable) as error:
        print(f"syncserver-admin: {error}", file=stderr)
        return 1
    except KeyboardInterrupt:
        print("syncserver-admin: interrupted", file=stderr)
        return 130
    finally:
        context.close()
