"""What every admin command works with: the parsed settings and the backends they name."""

import functools
import os
import sys
import time

from syncserver.errors import ConfigError
from syncserver.settings import parse_settings


class AdminError(Exception):
    """A failure the operator can act on; its message is one sentence."""


class AdminContext:
    """Settings and backends built lazily from the server's ini file.

    Backends are built on first use, so ``--help`` and commands that need no
    database work without one.
    """

    def __init__(self, config_path, stdout=None, stderr=None, quiet=False):
        self.config_path = config_path
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.quiet = quiet
        self._opened = []

    @functools.cached_property
    def raw_settings(self):
        """The ``[app:main]`` keys of the ini file, as PasteDeploy reads them."""
        from paste.deploy.loadwsgi import APP, loadcontext

        path = os.path.abspath(self.config_path)
        if not os.path.exists(path):
            raise ConfigError(f"the configuration file {self.config_path} does not exist")
        try:
            return dict(loadcontext(APP, "config:" + path).local_conf)
        except LookupError as error:
            raise ConfigError(
                f"{self.config_path} has no usable [app:main] section ({error})") from None

    @functools.cached_property
    def settings(self):
        return parse_settings(self.raw_settings)

    @functools.cached_property
    def storage(self):
        backend = self.settings.storage.backend.from_settings(self.settings.storage)
        self._opened.append(backend)
        return backend

    @functools.cached_property
    def auth(self):
        backend = self.settings.auth.backend.from_settings(self.settings.auth)
        self._opened.append(backend)
        return backend

    @functools.cached_property
    def nodes(self):
        """The node list of ``nodes.*``, whether or not the server assigns from it yet."""
        backend = self.settings.nodes.backend.from_settings(self.settings.nodes)
        self._opened.append(backend)
        return backend

    def echo(self, line=""):
        print(line, file=self.stdout)

    def progress(self, label, total=None):
        """A progress line on stderr for long work; silent with ``--quiet`` or off a terminal."""
        interactive = not self.quiet and getattr(self.stderr, "isatty", lambda: False)()
        return Progress(label, total, self.stderr if interactive else None)

    def close(self):
        for backend in reversed(self._opened):
            backend.close()
        self._opened.clear()


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
            percent = 100 * self.done // self.total
            text = f"{self.label}: {self.done}/{self.total} ({percent}%)"
        else:
            text = f"{self.label}: {self.done}"
        self.stream.write("\r" + text)
        self.stream.flush()
