"""The configuration reference cannot drift from the code."""

import dataclasses
import pathlib
import re

from syncserver import settings

REFERENCE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "configuration.rst"


def documented_keys():
    return set(re.findall(r"``([a-z_]+\.[a-z_]+)``", REFERENCE.read_text()))


def test_every_setting_is_documented_and_nothing_else():
    code_keys = {
        f"{section}.{field.name}"
        for section, cls in settings._SECTIONS.items()
        for field in dataclasses.fields(cls) if field.name != "options"
    }
    documented = {key for key in documented_keys() if key.split(".")[0] in settings._SECTIONS}
    assert code_keys == documented


def test_ini_files_use_only_documented_keys():
    root = REFERENCE.parent.parent
    documented = documented_keys()
    for name in ("development.ini", "production.ini"):
        text = (root / name).read_text().split("[server:main]")[0]
        keys = set(re.findall(r"^([a-z_]+\.[a-z_]+)\s*=", text, re.MULTILINE))
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
