"""``syncserver-admin check`` for the cache, directory, SMTP, node list and throttle store.

Each against the real service, up and then down (the session's private
redis-server and slapd are stopped and brought back; SMTP servers are our own).
"""

import json

from tests.admin.conftest import run_admin, write_ini
from tests.auth.ldap_server import (
    ENABLED_FILTER,
    PEOPLE_DN,
    SERVICE_DN,
    SERVICE_PASSWORD,
)
from tests.services import SMTPServer, free_port


def lines(result):
    """``{check name: "ok"/"FAIL"}`` of a text run."""
    return {line.split()[1]: line.split()[0] for line in result.out.splitlines()}


def test_cache_and_redis_throttle(tmp_path, admin_url, redis_url, redis_server):
    ini = write_ini(tmp_path / "redis.ini", admin_url, **{
        "storage.backend": "redis", "storage.wrapped_backend": "sql",
        "storage.redis_url": redis_url, "throttle.redis_url": redis_url})
    result = run_admin(ini, "check")
    assert result.code == 0, result
    assert lines(result)["cache"] == "ok" and lines(result)["throttle"] == "ok"

    redis_server.stop()
    try:
        down = run_admin(ini, "check")
    finally:
        redis_server.start()
    assert down.code == 1
    assert lines(down) == {"configuration": "ok", "storage": "ok", "auth": "ok", "schema": "ok",
                           "cache": "FAIL", "throttle": "FAIL"}
    assert "check failed: cache, throttle" in down.err


def ldap_ini(tmp_path, directory, url, **extra):
    return write_ini(tmp_path / "ldap.ini", url, **{
        "auth.backend": "ldap", "auth.ldapuri": directory.uri, "auth.bind_dn": SERVICE_DN,
        "auth.bind_password": SERVICE_PASSWORD, "auth.users_base_dn": PEOPLE_DN,
        "auth.enabled_filter": ENABLED_FILTER, "auth.ldap_timeout": "2", **extra})


def test_directory(tmp_path, admin_url, ldap_directory):
    result = run_admin(ldap_ini(tmp_path, ldap_directory, admin_url), "check", "--json")
    assert result.code == 0, result
    directory = {check["name"]: check for check in json.loads(result.out)}["directory"]
    assert directory["ok"] and PEOPLE_DN in directory["detail"]
    assert "read-only" in directory["detail"]

    wrong_base = run_admin(ldap_ini(tmp_path, ldap_directory, admin_url, **{
        "auth.users_base_dn": "ou=nobody,dc=example,dc=org"}), "check")
    assert wrong_base.code == 1 and lines(wrong_base)["directory"] == "FAIL"
    assert "does not exist" in wrong_base.out

    refused = run_admin(ldap_ini(tmp_path, ldap_directory, admin_url, **{
        "auth.bind_password": "not the password"}), "check")
    assert lines(refused)["directory"] == "FAIL" and "service account" in refused.out

    ldap_directory.stop()
    try:
        down = run_admin(ldap_ini(tmp_path, ldap_directory, admin_url), "check")
    finally:
        ldap_directory.start()
    assert down.code == 1
    assert lines(down)["directory"] == "FAIL" and lines(down)["auth"] == "FAIL"


def smtp_keys(port, **extra):
    return {"smtp.host": "127.0.0.1", "smtp.port": str(port),
            "smtp.sender": "sync@example.org", **extra}


def test_smtp_sends_nothing_and_checks_the_login(tmp_path, admin_url):
    server = SMTPServer(logins={"syncer": "mail secret"}).start()
    try:
        good = run_admin(write_ini(tmp_path / "a.ini", admin_url, **smtp_keys(
            server.port, **{"smtp.user": "syncer", "smtp.password": "mail secret"})), "check")
        assert good.code == 0, good
        assert lines(good)["smtp"] == "ok" and "EHLO, login ok" in good.out
        assert server.accepted_logins == ["syncer"] and server.messages == []

        bad = run_admin(write_ini(tmp_path / "b.ini", admin_url, **smtp_keys(
            server.port, **{"smtp.user": "syncer", "smtp.password": "wrong"})), "check")
        assert bad.code == 1 and lines(bad)["smtp"] == "FAIL"
        assert "wrong" not in bad.out  # the password is never printed
    finally:
        server.stop()
    down = run_admin(write_ini(tmp_path / "c.ini", admin_url, **smtp_keys(server.port)),
                     "check")
    assert down.code == 1 and lines(down)["smtp"] == "FAIL"
    nowhere = run_admin(write_ini(tmp_path / "d.ini", admin_url, **smtp_keys(free_port())),
                        "check")
    assert "ConnectionRefusedError" in nowhere.out


def test_node_list_and_sql_throttle(tmp_path, admin_url):
    ini = write_ini(tmp_path / "nodes.ini", admin_url, **{"nodes.assignment": "true"})
    assert run_admin(ini, "node", "add", "https://node1.example.org/", "--capacity", "10"
                     ).code == 0
    result = run_admin(ini, "check")
    assert result.code == 0, result
    assert lines(result)["nodes"] == "ok" and "1 node(s)" in result.out
    assert lines(result)["throttle"] == "ok"

    off = run_admin(write_ini(tmp_path / "off.ini", admin_url, **{"throttle.enabled": "false"}),
                    "check")
    assert "throttle" not in lines(off) and "nodes" not in lines(off)
