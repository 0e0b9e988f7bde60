"""Listing and counting the accounts of a real slapd, paged and not, and through the CLI."""

import json
import uuid

import ldap
import ldap.modlist
import pytest

from syncserver.auth import AuthBackend, ldap_listing
from syncserver.auth.ldap_listing import match_all_filter, username_attribute
from syncserver.settings import parse_settings
from tests.admin.conftest import run_admin, write_ini
from tests.auth.ldap_server import (
    ADMIN_DN,
    ADMIN_PASSWORD,
    BASE_DN,
    ENABLED_FILTER,
    SERVICE_DN,
    SERVICE_PASSWORD,
)
from tests.backends import open_from_settings, prepared_database, sql_storage

NAMES = ["amy", "ben", "cat", "dan", "eve", "fay", "gus"]


@pytest.fixture
def people(ldap_directory):
    """A fresh ou with NAMES (ben disabled), one invalid username and one name used twice."""
    ou = f"ou=list-{uuid.uuid4().hex[:8]},{BASE_DN}"
    connection = ldap.initialize(ldap_directory.uri)
    connection.simple_bind_s(ADMIN_DN, ADMIN_PASSWORD)
    dns = [ou]
    connection.add_s(ou, ldap.modlist.addModlist({
        "objectClass": [b"organizationalUnit"], "ou": [ou.split(",")[0][3:].encode()]}))

    def add(rdn, uid, **extra):
        dn = f"{rdn},{ou}"
        entry = {"objectClass": [b"inetOrgPerson"], "uid": [uid.encode()],
                 "cn": [uid.encode()], "sn": [uid.encode()]}
        entry.update({key: [value.encode()] for key, value in extra.items()})
        connection.add_s(dn, ldap.modlist.addModlist(entry))
        dns.append(dn)

    for name in NAMES:
        extra = {"mail": f"{name}@example.org"}
        if name == "ben":
            extra["employeeType"] = "disabled"
        add(f"uid={name}", name, **extra)
    add("cn=bad", "not a sync name!")
    add("cn=twin1", "twin")
    add("cn=twin2", "twin")
    yield ou
    for dn in reversed(dns):
        connection.delete_s(dn)
    connection.unbind_s()


def settings_for(ldap_directory, ou, sqluri, **extra):
    return {"storage.sqluri": sqluri, "auth.backend": "ldap", "auth.ldapuri": ldap_directory.uri,
            "auth.bind_dn": SERVICE_DN, "auth.bind_password": SERVICE_PASSWORD,
            "auth.users_base_dn": ou, "auth.enabled_filter": ENABLED_FILTER, **extra}


@pytest.fixture
def make_auth(ldap_directory, people, sqlite_url):
    built = []

    def build(**extra):
        parsed = parse_settings(settings_for(ldap_directory, people, sqlite_url,
                                             **{"auth.create_tables": "true", **extra}))
        backend = open_from_settings(AuthBackend, parsed.auth)
        built.append(backend)
        return backend

    yield build
    for backend in built:
        backend.close()


def test_match_all_filter_and_username_attribute():
    assert match_all_filter("(&(objectClass=person)(uid={username}))") == (
        "(&(objectClass=person)(uid=*))")
    assert username_attribute("(&(objectClass=person)(mailLocal = {username}))", "uid") == (
        "mailLocal")
    assert username_attribute("(|(a=x)(b={username}x))", "uid") == "uid"


@pytest.mark.parametrize("paged", [True, False])
def test_list_pages_in_username_order(make_auth, monkeypatch, paged):
    # Pages of two entries, so that the paged search really takes several rounds.
    monkeypatch.setattr(ldap_listing, "SEARCH_PAGE_SIZE", 2)
    auth = make_auth()
    assert auth._pages_results() is True  # slapd offers RFC 2696
    auth._paged_results_supported = paged
    listed = auth.list_users(limit=100)
    assert [user.username for user in listed] == NAMES
    assert auth.count_users() == len(NAMES)
    by_name = {user.username: user for user in listed}
    assert by_name["ben"].enabled is False and by_name["amy"].enabled is True
    assert by_name["amy"].email == "amy@example.org"
    assert by_name["amy"] == auth.get_user("amy")
    assert len({user.user_id for user in listed}) == len(NAMES)

    assert [u.username for u in auth.list_users(limit=3)] == ["amy", "ben", "cat"]
    assert [u.username for u in auth.list_users(after="cat", limit=3)] == ["dan", "eve", "fay"]
    assert [u.username for u in auth.list_users(after="fay", limit=3)] == ["gus"]
    assert auth.list_users(after="gus") == []


def test_unpaged_directory_over_the_size_limit_says_so(make_auth, monkeypatch):
    monkeypatch.setattr(ldap_listing, "MAX_UNPAGED_ENTRIES", 3)
    auth = make_auth()
    auth._paged_results_supported = False
    with pytest.raises(NotImplementedError, match="cannot be listed"):
        auth.list_users()


def test_uid_number_mode_lists_only_entries_with_an_id(make_auth):
    # None of the entries of this ou has a uidNumber: none can use Sync.
    auth = make_auth(**{"auth.uid_number_attribute": "uidNumber"})
    assert auth.list_users() == [] and auth.count_users() == 0


def test_filter_characters_in_usernames_do_not_reach_the_listing_filter(make_auth):
    auth = make_auth(**{"auth.user_filter": "(&(objectClass=inetOrgPerson)(uid={username}))"})
    assert [user.username for user in auth.list_users()] == NAMES
    # The lookup of one name still escapes it: '*' matches only itself.
    assert auth.get_user("a*") is None


def test_admin_user_list_and_stats_on_a_directory(ldap_directory, people, sqlite_url, tmp_path):
    prepared_database(sqlite_url).close()
    extra = settings_for(ldap_directory, people, sqlite_url)
    del extra["storage.sqluri"]
    ini = write_ini(tmp_path / "ldap.ini", sqlite_url, **extra)
    listing = run_admin(ini, "user", "list", "--json")
    assert listing.code == 0, listing
    assert [user["username"] for user in json.loads(listing.out)] == NAMES
    paged = run_admin(ini, "user", "list", "--after", "dan", "--limit", "2")
    assert [line.split()[1] for line in paged.out.splitlines()[1:]] == ["eve", "fay"]
    stats = run_admin(ini, "stats", "--json")
    assert stats.code == 0, stats
    assert json.loads(stats.out)["accounts"] == len(NAMES)


def test_admin_user_delete_on_a_read_only_directory_keeps_the_data(
        ldap_directory, people, sqlite_url, tmp_path):
    from syncserver.protocol.timestamps import now_centiseconds
    from syncserver.storage import ItemWrite

    prepared_database(sqlite_url).close()
    extra = settings_for(ldap_directory, people, sqlite_url)
    del extra["storage.sqluri"]
    ini = write_ini(tmp_path / "ldap.ini", sqlite_url, **extra)
    user_id = json.loads(run_admin(ini, "user", "list", "--json").out)[0]["user_id"]
    storage = sql_storage(sqlite_url)
    try:
        storage.set_items(user_id, "bookmarks", [ItemWrite("a", payload="kept")],
                          now_centiseconds())
        result = run_admin(ini, "user", "delete", "amy", "--yes")
        assert result.code == 1 and "cannot change" in result.err
        assert storage.get_item(user_id, "bookmarks", "a")["payload"] == "kept"
    finally:
        storage.close()


@pytest.mark.parametrize("command", [
    ("user", "add", "newcomer", "--password-stdin"),
    ("user", "set-password", "amy", "--password-stdin"),
    ("user", "disable", "amy"),
])
def test_admin_changes_refused_by_a_read_only_directory_are_one_sentence(
        ldap_directory, people, sqlite_url, tmp_path, command):
    prepared_database(sqlite_url).close()
    extra = settings_for(ldap_directory, people, sqlite_url)
    del extra["storage.sqluri"]
    ini = write_ini(tmp_path / "ldap.ini", sqlite_url, **extra)
    result = run_admin(ini, *command, stdin="a long new password\n")
    assert result.code == 1, result
    assert "directory" in result.err and "unexpected error" not in result.err
    assert result.err.count("\n") == 1
