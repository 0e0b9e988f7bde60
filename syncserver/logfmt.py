"""Log records as JSON lines, for log collectors (``[formatter_json]`` in the ini file)::

    [formatter_json]
    class = syncserver.logfmt.JSONFormatter

Each line is one object: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
``message``, ``exception`` (the traceback, when there is one), and any field
the code attached to the record, such as ``crash_id`` and ``status`` on the
500/503 lines of :mod:`syncserver.web.crashes`. What the server logs never holds
a password or an Authorization header, so neither does a JSON line.
"""

import json
import logging
from datetime import datetime, timezone

#: The attributes every LogRecord has; anything else was attached by the caller (``extra``).
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}


class JSONFormatter(logging.Formatter):
    """One JSON object per record (the ini's ``format`` and ``datefmt`` are ignored)."""

    def format(self, record):
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRIBUTES and name not in entry:
                entry[name] = value if _is_plain(value) else repr(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=repr)


def _is_plain(value):
    return value is None or isinstance(value, (str, int, float, bool, list, dict))
