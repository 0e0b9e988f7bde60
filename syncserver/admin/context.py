"""What every admin command works with: the parsed settings, the backends they name, output."""

import dataclasses
import functools
import json
import sys
import time

from syncserver import app, plugins
from syncserver.auth import AuthBackend
from syncserver.migrations import SchemaNotReady
from syncserver.nodes import NodeBackend
from syncserver.settings import parse_settings, read_ini
from syncserver.settings.databases import redact_url
from syncserver.storage import StorageBackend

__all__ = ["AdminContext", "AdminError", "Progress", "format_bytes", "format_time", "redact_url"]


class AdminError(Exception):
    """A failure the operator can act on; its message is one sentence."""


class AdminContext:
    """Settings and backends built lazily from the server's ini file.

    Backends are built on first use, so ``--help`` and commands that need no
    database work without one. They are built as the server builds them,
    except that admin commands never create tables (``db upgrade`` does)
    and may add accounts even when ``auth.allow_new_users`` is false.
    """

    def __init__(self, config_path, stdout=None, stderr=None, stdin=None, quiet=False):
        self.config_path = config_path
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.stdin = stdin or sys.stdin
        self.quiet = quiet
        self._opened = []

    @functools.cached_property
    def raw_settings(self):
        """The ``[app:main]`` keys of the ini file, as PasteDeploy reads them."""
        return read_ini(self.config_path)

    @functools.cached_property
    def settings(self):
        return parse_settings(self.raw_settings)

    @functools.cached_property
    def databases(self):
        """The shared databases, as the server declares them (admin never creates tables)."""
        registry = app.declare_databases(self.no_tables)
        self._opened.append(registry)
        return registry

    @functools.cached_property
    def no_tables(self):
        """The settings with every ``create_tables`` off (``db upgrade`` creates them)."""
        return app.with_create_tables(self.settings, False)

    @functools.cached_property
    def storage(self):
        if not self.settings.serves_storage:
            raise AdminError("this configuration keeps no records (sync11.enabled and "
                             "storage15.enabled are false: a tokenserver only); run the "
                             "command with a storage node's configuration.")
        return self._open(lambda: plugins.open_backend(
            StorageBackend, self.settings.storage.backend, self.no_tables.storage,
            self.databases))

    @property
    def storage_if_served(self):
        """The storage when this process keeps records (Sync 1.1 or 1.5), else None."""
        return self.storage if self.settings.serves_storage else None

    @functools.cached_property
    def auth(self):
        """The accounts, with no login remembered and registration always open."""
        settings = dataclasses.replace(self.no_tables.auth, allow_new_users=True)
        return self._open(lambda: app.cached_auth(
            plugins.open_backend(AuthBackend, settings.backend, settings, self.databases),
            settings, self.databases, cache_seconds=0))

    @functools.cached_property
    def nodes(self):
        """The node list of ``nodes.*``, whether or not the server assigns from it yet."""
        return self._open(lambda: plugins.open_backend(
            NodeBackend, self.settings.nodes.backend, self.no_tables.nodes, self.databases))

    @property
    def nodes_if_used(self):
        """The node list when the server uses one (assigning, or as a node), else None."""
        return self.nodes if self.settings.nodes.in_use else None

    @functools.cached_property
    def token_users(self):
        """The Sync 1.5 users of ``tokenserver.*``, whether or not the tokenserver is on yet."""
        from syncserver.tokenserver.users_sql import SQLTokenUsers

        return self._open(lambda: SQLTokenUsers.open(self.no_tables.tokenserver,
                                                     self.databases))

    @functools.cached_property
    def oauth_verifier(self):
        """The tokenserver's access-token verifier (it fetches nothing until asked)."""
        from syncserver.tokenserver.oauth import OAuthVerifier

        return OAuthVerifier(self.settings.tokenserver.oauth_settings())

    @functools.cached_property
    def reset_codes_if_used(self):
        """The password-reset codes when password reset is configured (``smtp.host``), else None."""
        if not self.settings.smtp.host:
            return None
        from syncserver.accounts.reset_codes import ResetCodeStore

        return self._open(lambda: ResetCodeStore.from_settings(self.no_tables.reset,
                                                               self.databases))

    def _open(self, build):
        backend = build()
        self._opened.append(backend)
        try:
            app.prepare_schemas(self.databases)
        except SchemaNotReady as error:
            problem = error.problem.split(" is false but ", 1)[-1]
            raise AdminError(f"{problem}: run 'syncserver-admin db upgrade'.") from None
        return backend

    # -- output -------------------------------------------------------------

    def echo(self, line=""):
        print(line, file=self.stdout)

    def echo_json(self, value):
        print(json.dumps(value, indent=2, sort_keys=False), file=self.stdout)

    def echo_table(self, headers, rows):
        """Rows as plain columns aligned under ``headers`` (numbers right-aligned)."""
        rows = [[_cell(value) for value in row] for row in rows]
        widths = [max([len(header)] + [len(row[index]) for row in rows])
                  for index, header in enumerate(headers)]
        numeric = [bool(rows) and all(_is_number(row[index]) for row in rows)
                   for index in range(len(headers))]

        def line(cells):
            parts = [cell.rjust(width) if right else cell.ljust(width)
                     for cell, width, right in zip(cells, widths, numeric, strict=True)]
            return "  ".join(parts).rstrip()

        self.echo(line(headers))
        for row in rows:
            self.echo(line(row))

    def echo_fields(self, pairs):
        """``name  value`` lines with the names aligned."""
        width = max(len(name) for name, _ in pairs)
        for name, value in pairs:
            self.echo(f"{name.ljust(width)}  {_cell(value)}")

    def progress(self, label, total=None):
        """A progress line on stderr for long work; silent with ``--quiet`` or off a terminal."""
        interactive = not self.quiet and getattr(self.stderr, "isatty", lambda: False)()
        return Progress(label, total, self.stderr if interactive else None)

    def is_interactive(self):
        return getattr(self.stdin, "isatty", lambda: False)()

    def close(self):
        for backend in reversed(self._opened):
            backend.close()
        self._opened.clear()


def _cell(value):
    if value is None:
        return "-"
    return str(value)


def _is_number(text):
    return text == "-" or text.replace(".", "", 1).isdigit()


def format_time(epoch_seconds):
    """``2024-06-01 12:00:00 UTC``, or None."""
    if epoch_seconds is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch_seconds))


def format_bytes(count):
    """``1.5 MiB (1572864 bytes)``: readable first, exact after."""
    size = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    if unit == "bytes":
        return f"{count} bytes"
    return f"{size:.1f} {unit} ({count} bytes)"


class Progress:
    """``label: done/total (pct%)`` redrawn at most ten times a second."""

    def __init__(self, label, total, stream):
        self.label = label
        self.total = total
        self.stream = stream
        self.done = 0
        self._drawn_at = 0.0

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def advance(self, count=1):
        self.done += count
        now = time.monotonic()
        if now - self._drawn_at >= 0.1:
            self._draw()
            self._drawn_at = now

    def close(self):
        if self.stream is not None:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
            self.stream = None

    def _draw(self):
        if self.stream is None:
            return
        if self.total:
            percent = min(100, 100 * self.done // self.total)
            text = f"{self.label}: {self.done}/{self.total} ({percent}%)"
        else:
            text = f"{self.label}: {self.done}"
        self.stream.write("\r" + text)
        self.stream.flush()
