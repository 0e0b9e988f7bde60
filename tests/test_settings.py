"""Settings: typed, defaulted, and a clear sentence naming the key when wrong."""

import pytest

from syncserver.errors import ConfigError
from syncserver.settings import parse_settings


def settings(**raw):
    raw.setdefault("storage.sqluri", "sqlite:///x.db")
    return parse_settings({key.replace("__", "."): value for key, value in raw.items()})


def test_defaults():
    parsed = settings()
    assert parsed.storage.backend.__name__ == "SQLStorage"
    assert parsed.auth.backend.__name__ == "SQLAuth"
    assert parsed.storage.quota_size == 0
    assert parsed.storage.batch_max_count == 100
    assert parsed.storage.batch_max_bytes == 1048576
    assert parsed.storage.max_payload_bytes == 262144
    assert parsed.storage.create_tables is False
    assert parsed.auth.allow_new_users is True
    assert parsed.auth.sqluri == "sqlite:///x.db"  # defaults to the storage database
    assert parsed.nodes.fallback_node is None
    assert parsed.global_.shared_secret is None
    assert parsed.global_.retry_after == 1800


def test_every_public_key_is_accepted_and_typed():
    parsed = settings(storage__backend="sql", storage__quota_size="5120",
                      auth__backend="sql", auth__sqluri="sqlite:///auth.db",
                      auth__allow_new_users="false", nodes__fallback_node="sync.example.org",
                      global__shared_secret="s3cret", global__retry_after="60",
                      storage__batch_max_count="50", storage__batch_max_bytes="1000",
                      storage__max_payload_bytes="100", storage__create_tables="true")
    assert parsed.storage.quota_size == 5120
    assert parsed.auth.allow_new_users is False
    assert parsed.auth.sqluri == "sqlite:///auth.db"
    assert parsed.nodes.fallback_node == "https://sync.example.org/"
    assert parsed.global_.shared_secret == "s3cret"
    assert parsed.global_.retry_after == 60
    assert (parsed.storage.batch_max_count, parsed.storage.batch_max_bytes,
            parsed.storage.max_payload_bytes, parsed.storage.create_tables) == (50, 1000, 100, True)


def test_dotted_backend_path():
    parsed = settings(storage__backend="syncserver.storage.sql.SQLStorage")
    assert parsed.storage.backend.__name__ == "SQLStorage"


def test_fallback_node_keeps_scheme_and_adds_slash():
    assert settings(nodes__fallback_node="http://localhost:5000").nodes.fallback_node == (
        "http://localhost:5000/")


@pytest.mark.parametrize("raw,key", [
    ({"storage.backend": "nosuch"}, "storage.backend"),
    ({"storage.backend": "nosuch.module.Class"}, "storage.backend"),
    ({"storage.backend": "syncserver.settings.Settings"}, "storage.backend"),
    ({"auth.backend": "json.JSONDecoder"}, "auth.backend"),
    ({"storage.quota_sise": "5"}, "storage.quota_sise"),
    ({"storage.quota_size": "lots"}, "storage.quota_size"),
    ({"storage.quota_size": "-1"}, "storage.quota_size"),
    ({"auth.allow_new_users": "perhaps"}, "auth.allow_new_users"),
    ({"frobnicate.level": "3"}, "frobnicate.level"),
    ({"sqluri": "x"}, "sqluri"),
    ({"global.shared_secret": "${SYNCSERVER_TEST_UNSET_VARIABLE}"}, "global.shared_secret"),
])
def test_bad_settings_name_the_key(raw, key):
    with pytest.raises(ConfigError) as caught:
        settings(**{k.replace(".", "__"): v for k, v in raw.items()})
    message = str(caught.value)
    assert key in message
    assert "\n" not in message


def test_secrets_can_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SYNCSERVER_TEST_SECRET", "from-env")
    assert settings(global__shared_secret="${SYNCSERVER_TEST_SECRET}").global_.shared_secret == (
        "from-env")


def test_plugin_missing_methods_is_refused(tmp_path, monkeypatch):
    (tmp_path / "half_plugin.py").write_text(
        "class HalfStorage:\n    def is_healthy(self):\n        return True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        settings(storage__backend="half_plugin.HalfStorage")
    assert "get_items" in str(caught.value) and "storage.backend" in str(caught.value)


def test_plugin_extra_settings_are_accepted(tmp_path, monkeypatch):
    (tmp_path / "extra_plugin.py").write_text(
        "from syncserver.storage.sql import SQLStorage\n"
        "class ExtraStorage(SQLStorage):\n    extra_settings = ('shard_count',)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    parsed = settings(storage__backend="extra_plugin.ExtraStorage", storage__shard_count="4")
    assert parsed.storage.options["shard_count"] == "4"
    with pytest.raises(ConfigError):
        settings(storage__backend="extra_plugin.ExtraStorage", storage__shard_cout="4")


def test_paste_factory_stops_with_one_sentence(tmp_path):
    from syncserver.app import make_app
    with pytest.raises(SystemExit) as caught:
        make_app({}, **{"storage.sqluri": f"sqlite:///{tmp_path}/x.db", "storage.quota_sise": "1"})
    assert str(caught.value) == "syncserver: configuration error: Unknown setting 'storage.quota_sise'."


def test_paste_factory_names_create_tables_when_the_schema_is_missing(tmp_path):
    from syncserver.app import make_app
    with pytest.raises(SystemExit) as caught:
        make_app({}, **{"storage.sqluri": f"sqlite:///{tmp_path}/empty.db"})
    assert "storage.create_tables = true" in str(caught.value)


def test_node_settings_default_to_a_single_server():
    parsed = settings(auth__sqluri="sqlite:///auth.db", auth__create_tables="true")
    assert parsed.nodes.backend.__name__ == "SQLNodes"
    assert (parsed.nodes.assignment, parsed.nodes.this_node, parsed.auth.check_node) == (
        False, None, False)
    assert parsed.nodes.in_use is False
    assert parsed.nodes.cache_seconds == 5
    assert parsed.nodes.sqluri == "sqlite:///auth.db"  # the accounts database
    assert parsed.nodes.create_tables is True


def test_node_settings_of_a_storage_node():
    parsed = settings(nodes__this_node="sync1.example.org", auth__check_node="true",
                      nodes__cache_seconds="0", nodes__sqluri="sqlite:///nodes.db")
    assert parsed.nodes.this_node == "https://sync1.example.org/"
    assert parsed.auth.check_node is True
    assert parsed.nodes.in_use is True
    assert parsed.nodes.cache_seconds == 0
    assert parsed.nodes.sqluri == "sqlite:///nodes.db"
def test_environment_variables_inside_a_value(monkeypatch):
    monkeypatch.setenv("SYNCSERVER_TEST_DB_PASSWORD", "p%40ss${HOME}")
    parsed = parse_settings(
        {"storage.sqluri": "mysql+mysqldb://sync:${SYNCSERVER_TEST_DB_PASSWORD}@db/sync"})
    # Substituted once: the "${HOME}" that came from the variable is not read as a reference.
    assert parsed.storage.sqluri == "mysql+mysqldb://sync:p%40ss${HOME}@db/sync"
    assert parsed.auth.sqluri == parsed.storage.sqluri


def test_environment_variables_in_numbers_and_escaped_references(monkeypatch):
    monkeypatch.setenv("SYNCSERVER_TEST_POOL", "7")
    parsed = settings(storage__pool_size="${SYNCSERVER_TEST_POOL}",
                      global__shared_secret="a$${LITERAL}b")
    assert parsed.storage.pool_size == 7
    assert parsed.global_.shared_secret == "a${LITERAL}b"


def test_an_unset_variable_inside_a_value_names_key_and_variable():
    with pytest.raises(ConfigError) as error:
        parse_settings({"storage.sqluri": "mysql://sync:${SYNCSERVER_TEST_UNSET_VARIABLE}@db/s"})
    assert "storage.sqluri" in str(error.value)
    assert "SYNCSERVER_TEST_UNSET_VARIABLE" in str(error.value)


def test_deployment_keys():
    parsed = settings()
    assert parsed.global_.public_url is None
    assert parsed.global_.trusted_proxies == ()
    assert (parsed.logging.access_log, parsed.logging.access_format) == (False, "combined")
    parsed = settings(global__public_url="example.org/sync",
                      global__trusted_proxies="127.0.0.1, ::1 10.0.0.0/8",
                      logging__access_log="true", logging__access_format="JSON")
    assert parsed.global_.public_url == "https://example.org/sync/"
    assert [str(network) for network in parsed.global_.trusted_proxies] == [
        "127.0.0.1/32", "::1/128", "10.0.0.0/8"]
    assert (parsed.logging.access_log, parsed.logging.access_format) == (True, "json")


@pytest.mark.parametrize("raw,key", [
    ({"global.trusted_proxies": "127.0.0.1 localhost"}, "global.trusted_proxies"),
    ({"logging.access_format": "common"}, "logging.access_format"),
    ({"logging.access_log": "sometimes"}, "logging.access_log"),
    ({"logging.access_file": "x"}, "logging.access_file"),
])
def test_bad_deployment_values_name_the_key(raw, key):
    with pytest.raises(ConfigError) as error:
        settings(**{k.replace(".", "__"): v for k, v in raw.items()})
    assert key in str(error.value)
