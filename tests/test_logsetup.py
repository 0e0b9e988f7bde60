"""Log lines: the shipped format keeps level names whole; an ini without logging still logs."""

import configparser
import contextlib
import io
import logging
import pathlib

import pytest

from syncserver import logsetup

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("ini", ["development.ini", "production.ini"])
def test_the_shipped_format_spells_every_level_out(ini):
    parser = configparser.RawConfigParser()
    parser.read(ROOT / ini)
    formatter = logging.Formatter(parser.get("formatter_generic", "format"))
    for level in (logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL):
        record = logging.LogRecord("syncserver", level, __file__, 1, "message", (), None)
        assert f" {logging.getLevelName(level)} " in formatter.format(record)
    assert parser.get("formatter_generic", "format") == logsetup.LINE_FORMAT


@contextlib.contextmanager
def unconfigured_logging():
    """The root logger as in a process that configured no logging (pytest's handlers aside)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, [
        (logging.getLogger(name), logging.getLogger(name).level)
        for name in ("syncserver", "waitress")]
    root.handlers[:] = []
    root.setLevel(logging.WARNING)
    for logger, _ in saved[2]:
        logger.setLevel(logging.NOTSET)
    try:
        yield root
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for logger, level in saved[2]:
            logger.setLevel(level)


def test_without_configuration_the_server_logs_like_the_shipped_inis(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(logsetup.sys, "stderr", stream)
    with unconfigured_logging():
        assert logsetup.ensure_logging() is True
        logging.getLogger("waitress").info("Serving on http://127.0.0.1:5000")
        logging.getLogger("syncserver.security").warning("AuthFail: example")
        logging.getLogger("sqlalchemy").info("not shown: other libraries stay at WARNING")
        assert logsetup.ensure_logging() is False  # never twice
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].endswith("INFO    [waitress] Serving on http://127.0.0.1:5000")
    assert lines[1].endswith("WARNING [syncserver.security] AuthFail: example")


def test_any_configuration_wins():
    with unconfigured_logging() as root:
        root.handlers.append(logging.NullHandler())
        assert logsetup.ensure_logging() is False
        assert logging.getLogger("syncserver").level == logging.NOTSET
