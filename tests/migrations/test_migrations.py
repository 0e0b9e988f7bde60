"""The migrations create exactly the schema the models describe, on every database."""

import importlib
import os
import pkgutil
import subprocess
import sys

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import syncserver
from syncserver import migrations
from syncserver.auth.sql import metadata as auth_metadata
from syncserver.db import engines
from syncserver.errors import ConfigError
from syncserver.migrations.metadata import REGISTERED, combined_metadata
from syncserver.settings import StorageSettings
from syncserver.storage import ItemQuery, ItemWrite, StorageBackend
from syncserver.storage.sql import SQLStorage
from syncserver.storage.sql_schema import FIXED_COLLECTIONS
from tests.backends import open_from_settings, sql_auth, sql_storage
from tests.support import cheap_password_hasher

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def engine(database_url):
    engine = engines.create_engine(database_url, pool_size=2)
    yield engine
    engine.dispose()


def differences(engine):
    """What autogenerate would change to make the database match the models."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "compare_type": True, "compare_server_default": True})
        return compare_metadata(context, combined_metadata())


def test_upgrade_head_creates_what_the_models_describe(engine):
    migrations.upgrade(engine)
    assert differences(engine) == []
    with engine.connect() as connection:
        assert migrations.current_revision(connection) == migrations.head_revision()
        seeded = dict(connection.execute(sqlalchemy.text("SELECT name, id FROM collections")).all())
    assert seeded == FIXED_COLLECTIONS


def test_a_table_without_migration_is_a_difference(engine):
    """The comparison above can fail: an extra model table shows up."""
    migrations.upgrade(engine)
    models = combined_metadata()
    sqlalchemy.Table("unmigrated", models, sqlalchemy.Column("id", sqlalchemy.Integer,
                                                             primary_key=True))
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        diff = compare_metadata(context, models)
    assert [change[0] for change in diff] == ["add_table"]


def test_every_metadata_in_the_package_is_registered():
    """A backend module with its own MetaData must be listed in syncserver.migrations.metadata."""
    found = []
    for module_info in pkgutil.walk_packages(syncserver.__path__, "syncserver."):
        if (module_info.name.startswith("syncserver.migrations.")
                or module_info.name.endswith(".__main__")):
            continue  # env.py and __main__ run things when imported
        try:
            module = importlib.import_module(module_info.name)
        except ImportError as error:  # an optional dependency that is not installed
            if IN_CI:
                raise
            print(f"skipped {module_info.name}: {error}")
            continue
        for value in vars(module).values():
            if isinstance(value, sqlalchemy.MetaData) and value.tables:
                found.append((module_info.name, value))
    unregistered = {name for name, metadata in found
                    if not any(metadata is known for known in REGISTERED)}
    assert unregistered == set()
    assert found


IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def legacy_database(engine):
    """A database as create_tables made it before migrations: revision 0001, no version table."""
    migrations.upgrade(engine, "0001")
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("DROP TABLE alembic_version"))


def test_upgrade_of_a_database_made_before_migrations(engine, database_url):
    legacy_database(engine)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(
            "INSERT INTO users (username, password_hash, status) VALUES ('alice', 'x', 1)"))
        connection.execute(sqlalchemy.text(
            "INSERT INTO storage_users (userid, last_modified) VALUES (1, 5)"))
        connection.execute(sqlalchemy.text(
            "INSERT INTO items (userid, collection, id, payload, payload_size, ttl, modified) "
            "VALUES (1, 7, 'a', 'kept', 4, 9999999999, 5)"))
    with engine.connect() as connection:
        assert migrations.current_revision(connection) is None

    storage = open_from_settings(StorageBackend, StorageSettings(
        backend=SQLStorage, sqluri=database_url, create_tables=True))
    try:
        assert storage.get_item(1, "bookmarks", "a")["payload"] == "kept"
        assert storage.get_user_quota(1) is None
    finally:
        storage.close()
    assert differences(engine) == []
    with engine.connect() as connection:
        assert migrations.current_revision(connection) == migrations.head_revision()
        assert connection.execute(sqlalchemy.text("SELECT username FROM users")).scalar() == "alice"


def test_auth_database_made_before_migrations_gets_every_table(sqlite_url):
    """A separate auth database had only users tables; the upgrade adds the rest, keeps users."""
    engine = engines.create_engine(sqlite_url, pool_size=1)
    try:
        with engine.begin() as connection:
            # The old SQLAuth(create_tables=True) created only its own tables.
            auth_metadata.create_all(connection)
            connection.execute(sqlalchemy.text(
                "INSERT INTO users (username, password_hash, status) VALUES ('bob', 'x', 1)"))
        migrations.upgrade(engine)
        assert differences(engine) == []
        with engine.connect() as connection:
            assert connection.execute(sqlalchemy.text("SELECT username FROM users")).scalar() == "bob"
    finally:
        engine.dispose()


def test_start_up_refuses_an_older_schema(database_url, engine):
    migrations.upgrade(engine, "0001")
    settings = StorageSettings(backend=SQLStorage, sqluri=database_url, create_tables=False)
    with pytest.raises(ConfigError, match=r"revision 0001 but .* needs .*db upgrade"):
        open_from_settings(StorageBackend, settings)
    # create_tables = true upgrades it instead.
    storage = open_from_settings(StorageBackend, StorageSettings(
        backend=SQLStorage, sqluri=database_url, create_tables=True))
    storage.close()
    assert differences(engine) == []


def test_storage_and_auth_create_tables_share_one_history(database_url, engine):
    auth = sql_auth(database_url, password_hasher=cheap_password_hasher())
    storage = sql_storage(database_url)
    try:
        user = auth.create_user("alice", "password1", None)
        storage.set_items(user.user_id, "tabs", [ItemWrite("t", payload="x")], 100)
        assert storage.get_items(user.user_id, "tabs", ItemQuery(), False) == [{"id": "t"}]
    finally:
        auth.close()
        storage.close()
    assert differences(engine) == []


def run_alembic(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-c", os.path.join(ROOT, "alembic.ini"), *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)


def test_alembic_command_line_with_sqluri_and_with_the_server_ini(tmp_path, sqlite_url):
    result = run_alembic("-x", f"sqluri={sqlite_url}", "upgrade", "head")
    assert result.returncode == 0, result.stderr
    current = run_alembic("-x", f"sqluri={sqlite_url}", "current")
    assert migrations.head_revision() + " (head)" in current.stdout

    other = f"sqlite:///{tmp_path / 'other.db'}"
    ini = tmp_path / "server.ini"
    ini.write_text(f"[app:main]\nuse = egg:syncserver\nstorage.sqluri = {other}\n")
    result = run_alembic("upgrade", "head", env=dict(os.environ, SYNCSERVER_INI=str(ini)))
    assert result.returncode == 0, result.stderr
    engine = engines.create_engine(other, pool_size=1)
    try:
        assert differences(engine) == []
    finally:
        engine.dispose()


def test_0007_adds_purged_at_to_existing_token_users(engine):
    """A tokenserver database with users at 0006 keeps them, every row not purged yet."""
    migrations.upgrade(engine, "0006")
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(
            "INSERT INTO token_users (email, fxa_uid, generation, client_state, created_at, "
            "replaced_at) VALUES ('a@x', 'a', 1, 'aa', 10, 20), ('a@x', 'a', 2, 'bb', 20, NULL)"))
    migrations.upgrade(engine)
    assert differences(engine) == []
    with engine.connect() as connection:
        rows = connection.execute(sqlalchemy.text(
            "SELECT client_state, replaced_at, purged_at FROM token_users ORDER BY created_at"))
        assert [tuple(row) for row in rows] == [("aa", 20, None), ("bb", None, None)]
