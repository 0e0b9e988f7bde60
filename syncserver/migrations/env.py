"""Alembic environment of syncserver: which databases to migrate, and how.

The databases, first match wins:

1. engines or URLs handed over by :func:`syncserver.migrations.alembic_config`
   (start-up with ``create_tables``, ``syncserver-admin db ...``);
2. ``alembic -x sqluri=URL ...``;
3. the server's ini file: ``$SYNCSERVER_INI`` or ``production.ini`` (or
   ``-x ini=FILE``), whose SQL databases (``storage.sqluri``,
   ``auth.sqluri``... each once) are upgraded in turn.
"""

import logging
import logging.config
import os

from alembic import context

from syncserver import migrations
from syncserver.db import engines as db_engines
from syncserver.migrations.metadata import combined_metadata
from syncserver.settings import settings_from_ini

config = context.config
if config.config_file_name and not config.attributes.get("engines"):
    # Run by the alembic command: its ini sets up logging (never the server's own).
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger("alembic.env")


def target_urls():
    urls = config.attributes.get("sqluris") or []
    if urls:
        return urls
    arguments = context.get_x_argument(as_dictionary=True)
    if arguments.get("sqluri"):
        return [arguments["sqluri"]]
    ini = arguments.get("ini") or os.environ.get("SYNCSERVER_INI") or "production.ini"
    return settings_from_ini(ini).sql_urls()


def configure(**options):
    context.configure(target_metadata=combined_metadata(), version_table=migrations.VERSION_TABLE,
                      compare_type=True, compare_server_default=True, **options)


def migrate(engine):
    with migrations.locked_transaction(engine) as connection:
        configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()


def run_online():
    engines = config.attributes.get("engines") or []
    if engines:
        for engine in engines:
            migrate(engine)
        return
    for url in target_urls():
        engine = db_engines.create_engine(url, pool_size=1)
        try:
            logger.info("Migrating %s", engine.url.render_as_string(hide_password=True))
            migrate(engine)
        finally:
            engine.dispose()


def run_offline():
    """``alembic upgrade head --sql``: the SQL for the first database, printed."""
    configure(url=target_urls()[0], literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
