"""Command-line entry point of ``syncserver-admin``.

Every subcommand module registers its parsers through ``register(subparsers)``
and sets ``handler=function(context, args) -> int`` as the parser default.
Errors an operator can act on (:class:`AdminError`, configuration errors, a
backend that is down) end the command with one sentence and exit code 1;
anything unexpected too (``--traceback`` shows where it came from). A
command-line mistake exits with 2 and the usage.
"""

import argparse
import importlib
import os
import sys

from syncserver.admin.context import AdminContext, AdminError
from syncserver.auth import AuthError
from syncserver.errors import BackendUnavailable, ConfigError
from syncserver.settings.databases import unavailable_sentence

#: Subcommand modules of :mod:`syncserver.admin`, in the order ``--help`` lists them.
COMMAND_MODULES = ("users", "sync15_users", "nodes", "maintenance", "transfer", "checks",
                   "configuration", "database")

DEFAULT_CONFIG = "production.ini"


class _UsageError(Exception):
    """The command line itself is wrong (argparse's complaint, exit code 2)."""


class _ExitRequested(Exception):
    def __init__(self, status):
        super().__init__(status)
        self.status = status


def build_parser(stdout=None, stderr=None):
    """The parser; its messages (``--help``, usage errors) go to ``stdout``/``stderr``."""

    class Parser(argparse.ArgumentParser):
        def _print_message(self, message, file=None):
            if message:
                stream = stderr if file in (None, sys.stderr) else stdout
                (stream or file or sys.stderr).write(message)

        def exit(self, status=0, message=None):
            if message:
                self._print_message(message, sys.stderr)
            raise _ExitRequested(status)

        def error(self, message):
            self.print_usage(sys.stderr)
            raise _UsageError(f"{self.prog}: {message}")

    parser = Parser(
        prog="syncserver-admin",
        description="Manage a syncserver from the shell, with the server's own configuration file.")
    parser.add_argument(
        "-c", "--config", default=os.environ.get("SYNCSERVER_INI", DEFAULT_CONFIG),
        help="the server's ini file (default: $SYNCSERVER_INI or production.ini)")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars, only results and errors")
    parser.add_argument(
        "--traceback", action="store_true", help="show the traceback of an unexpected error")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"syncserver.admin.{name}").register(subparsers)
    return parser


def main(argv=None, stdout=None, stderr=None, stdin=None):
    """Run one command; returns the process exit code."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        args = build_parser(stdout, stderr).parse_args(argv)
    except _ExitRequested as request:
        return request.status
    except _UsageError as error:
        print(error, file=stderr)
        return 2
    context = AdminContext(args.config, stdout=stdout, stderr=stderr, stdin=stdin,
                           quiet=args.quiet)
    try:
        return args.handler(context, args) or 0
    except BackendUnavailable as error:
        print(f"syncserver-admin: {_sentence(_unavailable(error, context))}", file=stderr)
        return 1
    except (AdminError, ConfigError, AuthError) as error:
        print(f"syncserver-admin: {_sentence(error)}", file=stderr)
        return 1
    except KeyboardInterrupt:
        print("syncserver-admin: interrupted", file=stderr)
        return 130
    except Exception as error:
        if args.traceback:
            raise
        print(f"syncserver-admin: unexpected error: {type(error).__name__}: {_sentence(error)} "
              "(--traceback shows where)", file=stderr)
        return 1
    finally:
        context.close()


def _unavailable(error, context):
    """The error naming the setting and URL of the database that does not answer."""
    try:
        return unavailable_sentence(error, context.settings)
    except ConfigError:
        return error


def _sentence(error):
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
