"""mod_wsgi entry point: ``application``, built from ``production.ini`` or ``$SYNCSERVER_INI``.

Apache (``WSGIScriptAlias / /path/to/syncserver.wsgi``) imports this file
once per daemon process. The ini is the one named by the environment
variable ``SYNCSERVER_INI``, else ``production.ini`` next to this file; its
logging sections, if any, are applied first, as ``paster serve`` would.

``SYNCSERVER_INI`` and the secrets the ini reads (``${NAME}``) must be in
the *process* environment: Apache's ``SetEnv`` only reaches each request's
WSGI environ, after the application is built. Put them in
``/etc/apache2/envvars`` or a systemd drop-in (docs/deploying.rst).
"""

import configparser
import logging.config
import os

from paste.deploy import loadapp

HERE = os.path.dirname(os.path.abspath(__file__))
INI = os.path.abspath(os.environ.get("SYNCSERVER_INI") or os.path.join(HERE, "production.ini"))


def _configure_logging(ini):
    """Apply the ini's ``[loggers]`` sections, with ``%(here)s`` as PasteDeploy defines it."""
    parser = configparser.ConfigParser()
    if not parser.read(ini):
        raise SystemExit(f"syncserver.wsgi: cannot read {ini} (set SYNCSERVER_INI?)")
    if parser.has_section("loggers"):
        logging.config.fileConfig(
            ini, defaults={"here": os.path.dirname(ini), "__file__": ini},
            disable_existing_loggers=False)


_configure_logging(INI)
application = loadapp("config:" + INI)
