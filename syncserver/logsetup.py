"""Logging for an ini file that has no logging sections of its own.

``paster serve``, ``gunicorn --paste`` and ``syncserver.wsgi`` apply the
``[loggers]`` sections of the ini they are given, and only of that file: an
ini that reuses ``development.ini`` (``use = config:...``) without copying
them would lose every line, the security log and waitress's "Serving on"
included. So when the application is built and nobody has configured
logging (the root logger has no handler), it logs as the shipped inis do:
to standard error, INFO for ``syncserver`` and ``waitress``, WARNING for the
rest. Any logging configuration, however small, replaces this entirely.
"""

import logging
import sys

#: The line format of the shipped inis' ``[formatter_generic]``.
LINE_FORMAT = "%(asctime)s %(levelname)-7s [%(name)s] %(message)s"


def ensure_logging():
    """Apply the default above unless logging is configured; True when it was applied."""
    root = logging.getLogger()
    if root.handlers:
        return False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LINE_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in ("syncserver", "waitress"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
    return True
