"""The configuration reference cannot drift from the code."""

import pathlib
import re

from syncserver import settings
from syncserver.auth.ldap_options import LDAPSettings
from syncserver.settings import reference
from syncserver.storage.redis import RedisCacheSettings

REFERENCE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "configuration.rst"


def documented_keys():
    return set(re.findall(r"``([a-z0-9_]+\.[a-z0-9_]+)``", REFERENCE.read_text()))


#: The bundled backends' own keys, documented with their section.
BUNDLED_BACKEND_SETTINGS = {"storage": RedisCacheSettings, "auth": LDAPSettings}


def test_every_setting_is_documented_and_nothing_else():
    code_keys = {description.key for description in reference.core_keys()}
    for section, settings_class in BUNDLED_BACKEND_SETTINGS.items():
        code_keys |= {description.key
                      for description in reference.section_keys(section, settings_class)}
    documented = {key for key in documented_keys() if key.split(".")[0] in settings._SECTIONS}
    assert code_keys == documented


def test_the_example_plugins_keys_are_documented_where_plugins_are():
    """A plugin's keys come from its settings_class, like the bundled ones'."""
    import sys

    sys.path.insert(0, str(REFERENCE.parent / "examples"))
    try:
        from file_auth import FileAuthSettings
    finally:
        sys.path.pop(0)
    keys = {description.key for description in reference.section_keys("auth", FileAuthSettings)}
    plugins_page = (REFERENCE.parent / "plugins.rst").read_text()
    assert keys == {"auth.accounts_file"}
    assert all(f"``{key}``" in plugins_page for key in keys)


def test_every_field_of_a_settings_class_says_what_it_is_or_is_documented():
    """The help shown by ``syncserver-admin config`` comes from the ``#:`` comments."""
    helps = reference.field_help(RedisCacheSettings)
    assert helps["redis_url"].startswith("The Redis server")


def test_ini_files_use_only_documented_keys():
    root = REFERENCE.parent.parent
    documented = documented_keys()
    for name in ("development.ini", "production.ini"):
        text = (root / name).read_text().split("\n[server:main]")[0]
        keys = set(re.findall(r"^([a-z0-9_]+\.[a-z0-9_]+)\s*=", text, re.MULTILINE))
        assert keys and keys <= documented, name


def test_sphinx_builds_the_documentation_without_a_warning(tmp_path):
    """CI builds docs/ with warnings as errors: a broken reference or bad markup fails here."""
    import subprocess
    import sys

    docs = REFERENCE.parent
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(docs), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "html" / "index.html").exists()


def _shape(value):
    """The keys and value types of a JSON document, values left out (latencies vary)."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    return type(value).__name__


def test_the_quick_start_heartbeat_is_what_development_ini_answers(tmp_path):
    import json

    import webtest

    from syncserver.app import make_app

    quickstart = (REFERENCE.parent / "quickstart.rst").read_text()
    shown = re.search(r"__heartbeat__\n\n\.\. code-block:: none\n\n   (\{.*\})\n", quickstart)
    assert shown, "docs/quickstart.rst should show the heartbeat's answer"
    raw = settings.read_ini(REFERENCE.parent.parent / "development.ini")
    raw["storage.sqluri"] = f"sqlite:///{tmp_path / 'heartbeat.db'}"
    app = make_app({"here": str(tmp_path)}, **raw)
    try:
        answer = webtest.TestApp(app).get("/__heartbeat__").json
    finally:
        app.close()
    assert _shape(json.loads(shown.group(1))) == _shape(answer)
