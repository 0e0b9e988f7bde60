"""smtp.*, reset.* and pages.* settings: defaults, types, and refusals naming the key."""

import pytest

from syncserver.app import make_app
from syncserver.errors import ConfigError
from syncserver.settings import parse_settings


def settings(**raw):
    raw.setdefault("storage.sqluri", "sqlite:///x.db")
    return parse_settings(raw)


def test_defaults_leave_reset_off():
    parsed = settings()
    assert parsed.smtp.host is None and parsed.smtp.port == 25 and parsed.smtp.timeout == 10
    assert not parsed.smtp.starttls and not parsed.smtp.ssl
    assert parsed.reset.sqluri == "sqlite:///x.db"
    assert parsed.reset.code_lifetime_seconds == 21600
    assert parsed.pages.csrf_secret is None


def test_every_key_is_typed(monkeypatch, tmp_path):
    monkeypatch.setenv("SYNCSERVER_TEST_SMTP_PASSWORD", "pw from env")
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("x")
    parsed = settings(**{
        "auth.sqluri": "sqlite:///auth.db", "auth.create_tables": "true",
        "smtp.host": "mail.example.org", "smtp.port": "465", "smtp.sender": "s@example.org",
        "smtp.user": "u", "smtp.password": "${SYNCSERVER_TEST_SMTP_PASSWORD}",
        "smtp.ssl": "true", "smtp.starttls": "false", "smtp.timeout": "3",
        "smtp.ca_file": str(ca_file), "reset.code_lifetime_seconds": "60",
        "pages.csrf_secret": "k"})
    assert (parsed.smtp.port, parsed.smtp.ssl, parsed.smtp.timeout) == (465, True, 3)
    assert parsed.smtp.password == "pw from env"
    assert parsed.reset.sqluri == "sqlite:///auth.db" and parsed.reset.create_tables
    assert parsed.reset.code_lifetime_seconds == 60
    assert parsed.pages.csrf_secret == "k"


@pytest.mark.parametrize("raw,key", [
    ({"smtp.host": "h"}, "smtp.sender"),
    ({"smtp.host": "h", "smtp.sender": "s", "smtp.ssl": "1", "smtp.starttls": "1"}, "smtp.ssl"),
    ({"smtp.host": "h", "smtp.sender": "s", "smtp.user": "u"}, "smtp.password"),
    ({"smtp.host": "h", "smtp.sender": "s", "smtp.ca_file": "/no/such.pem"}, "smtp.ca_file"),
    ({"smtp.host": "h", "smtp.sender": "s", "smtp.timeout": "0"}, "smtp.timeout"),
    ({"smtp.port": "smtp"}, "smtp.port"),
    ({"smtp.hots": "h"}, "smtp.hots"),
    ({"reset.code_lifetime_seconds": "0"}, "reset.code_lifetime_seconds"),
    ({"pages.secret": "x"}, "pages.secret"),
])
def test_bad_settings_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        settings(**raw)


def test_missing_reset_table_names_the_key(tmp_path):
    """Reset codes in a database of their own that nobody has set up yet."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    codes = f"sqlite:///{tmp_path / 'codes.sqlite'}"
    make_app({}, **{"storage.sqluri": url, "storage.create_tables": "true"}).close()
    with pytest.raises(SystemExit, match=r"reset\.create_tables"):
        make_app({}, **{"storage.sqluri": url, "smtp.host": "127.0.0.1",
                        "smtp.sender": "s@example.org", "reset.sqluri": codes})
    make_app({}, **{"storage.sqluri": url, "smtp.host": "127.0.0.1",
                    "smtp.sender": "s@example.org", "reset.sqluri": codes,
                    "reset.create_tables": "true"}).close()
