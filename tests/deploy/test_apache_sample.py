"""The Apache site shipped in docs/apache/syncserver.conf is valid Apache configuration.

The sample is checked by Apache itself (``apache2 -t``) with its example
paths, user and certificate replaced by real ones, so a typo or a directive
mod_wsgi does not know fails here, not on an administrator's server.
"""

import subprocess

import pytest

from tests.conftest import service_missing
from tests.deploy.conftest import APACHE_BINARY, APACHE_MODULES, APACHE_USER, PROJECT_ROOT
from tests.services import self_signed_certificate

pytestmark = pytest.mark.deploy

SAMPLE = PROJECT_ROOT / "docs" / "apache" / "syncserver.conf"
MODULES = ("mpm_event", "authz_core", "alias", "wsgi", "ssl", "headers")


def test_the_sample_site_passes_apaches_configuration_test(tmp_path):
    missing = [name for name in MODULES if not (APACHE_MODULES / f"mod_{name}.so").exists()]
    if missing or not (APACHE_MODULES / "mod_wsgi.so").exists():
        service_missing("Apache + mod_wsgi", f"modules missing: {', '.join(missing)}")
    certificate, key = self_signed_certificate(tmp_path, "127.0.0.1")
    site = SAMPLE.read_text()
    for example, real in (
            ("/etc/letsencrypt/live/sync.example.org/fullchain.pem", str(certificate)),
            ("/etc/letsencrypt/live/sync.example.org/privkey.pem", str(key)),
            ("/srv/syncserver/venv", "/usr"),
            ("/srv/syncserver", str(PROJECT_ROOT)),
            ("user=syncserver group=syncserver", f"user={APACHE_USER} group={APACHE_USER}"),
            ("*:80>", "127.0.0.1:80>"), ("*:443>", "127.0.0.1:443>")):
        assert example in site, f"the sample no longer mentions {example!r}"
        site = site.replace(example, real)
    (tmp_path / "site.conf").write_text(site)
    modules = "\n".join(f"LoadModule {name}_module {APACHE_MODULES / f'mod_{name}.so'}"
                        for name in MODULES)
    (tmp_path / "httpd.conf").write_text(f"""
ServerRoot "{tmp_path}"
ServerName 127.0.0.1
PidFile "{tmp_path}/httpd.pid"
DefaultRuntimeDir "{tmp_path}"
ErrorLog "{tmp_path}/error.log"
User {APACHE_USER}
Group {APACHE_USER}
Listen 127.0.0.1:80
{modules}
WSGISocketPrefix "{tmp_path}/wsgi"
Include "{tmp_path}/site.conf"
""")
    result = subprocess.run([APACHE_BINARY, "-t", "-f", str(tmp_path / "httpd.conf")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Syntax OK" in result.stdout + result.stderr
