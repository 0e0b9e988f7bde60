"""``syncserver-admin export`` / ``import``: one user's account and records, round-trip exact."""

import json

import pytest

from tests.importers.conftest import Server, run_admin, write_ini
from tests.support import basic_auth

USERNAME = "exportme"
PASSWORD = "export password 1"


@pytest.fixture(params=["sqlite", "mysql"])
def two_databases(request, tmp_path):
    if request.param == "sqlite":
        return (f"sqlite:///{tmp_path / 'source.db'}", f"sqlite:///{tmp_path / 'target.db'}")
    make_database = request.getfixturevalue("mysql_databases")
    return make_database(), make_database()


def fill(server):
    client = server.client
    client.put_json(f"/user/1.0/{USERNAME}", {"email": "export@example.com",
                                              "password": PASSWORD})
    headers = basic_auth(USERNAME, PASSWORD)
    client.post_json(f"/1.1/{USERNAME}/storage/bookmarks", [
        {"id": f"b{i}", "payload": f"bookmark {i} ✓", "sortindex": i, "parentid": "menu"}
        for i in range(30)], headers=headers)
    client.put_json(f"/1.1/{USERNAME}/storage/tabs/t1", {"payload": "tab", "ttl": 3600},
                    headers=headers)
    client.put_json(f"/1.1/{USERNAME}/storage/history/h1", {"payload": "gone"}, headers=headers)
    client.delete(f"/1.1/{USERNAME}/storage/history/h1", headers=headers)
    return headers


def snapshot(server, headers):
    client = server.client
    info = client.get(f"/1.1/{USERNAME}/info/collections", headers=headers).json
    records = {name: client.get(f"/1.1/{USERNAME}/storage/{name}?full=1&sort=index",
                                headers=headers).json for name in info}
    return info, records


def test_export_then_import_into_another_server_is_exact(two_databases, tmp_path,
                                                         cheap_hashes):
    source_url, target_url = two_databases
    source = Server(source_url)
    headers = fill(source)
    before = snapshot(source, headers)
    source.close()

    export_file = tmp_path / "user.jsonl"
    code, out, err = run_admin("-c", write_ini(tmp_path / "source.ini", source_url),
                               "export", USERNAME, str(export_file))
    assert (code, err) == (0, "")
    assert "3 collections, 31 records" in out
    assert oct(export_file.stat().st_mode & 0o777) == "0o600"
    lines = [json.loads(line) for line in export_file.read_text().splitlines()]
    assert lines[0]["type"] == "account" and lines[0]["username"] == USERNAME
    assert "password" not in lines[0] and lines[0]["password_hash"].startswith("$argon2")

    target_ini = write_ini(tmp_path / "target.ini", target_url)
    code, out, err = run_admin("-c", target_ini, "import", str(export_file))
    assert (code, err) == (0, "")
    assert "accounts created: 1" in out and "records: 31" in out

    target = Server(target_url)
    assert snapshot(target, headers) == before  # same password, same stamps, same records
    exported_again = tmp_path / "again.jsonl"
    target.close()
    assert run_admin("-c", target_ini, "export", USERNAME, str(exported_again))[0] == 0
    assert exported_again.read_text() == export_file.read_text()


def test_import_twice_changes_nothing_and_dry_run_writes_nothing(tmp_path, cheap_hashes):
    source_url = f"sqlite:///{tmp_path / 'source.db'}"
    target_url = f"sqlite:///{tmp_path / 'target.db'}"
    source = Server(source_url)
    headers = fill(source)
    source.close()
    export_file = tmp_path / "user.jsonl"
    run_admin("-c", write_ini(tmp_path / "s.ini", source_url), "export", USERNAME,
              str(export_file))
    target_ini = write_ini(tmp_path / "t.ini", target_url)

    code, out, _ = run_admin("-c", target_ini, "import", "--dry-run", str(export_file))
    assert code == 0 and "dry run" in out and "accounts created: 1" in out
    target = Server(target_url)
    assert target.client.get(f"/user/1.0/{USERNAME}").text == "0"
    target.close()

    assert run_admin("-c", target_ini, "import", str(export_file))[0] == 0
    target = Server(target_url)
    first = snapshot(target, headers)
    target.close()
    code, out, _ = run_admin("-c", target_ini, "import", str(export_file))
    assert code == 0 and "accounts already present (records merged): 1" in out
    target = Server(target_url)
    assert snapshot(target, headers) == first
    target.close()


@pytest.mark.parametrize("content, message", [
    ("", "does not start with an account"),
    ("not json\n", "line 1 is not JSON"),
    ('{"type": "account", "format": 99, "username": "x"}\n', "format 99"),
    ('{"type": "account", "format": 1, "username": "x", "password_hash": "h"}\n'
     '{"type": "record", "collection": "nowhere", "id": "a"}\n', "line 2"),
    ('{"type": "account", "format": 1, "username": "x", "password_hash": "h"}\n'
     '{"type": "collection", "name": "tabs", "timestamp": 5}\n'
     '{"type": "record", "collection": "tabs", "id": "a", "modified": "soon"}\n',
     "modified has the wrong type"),
])
def test_a_bad_export_file_is_one_sentence_and_nothing_is_written(tmp_path, content, message):
    target_url = f"sqlite:///{tmp_path / 'target.db'}"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    code, _, err = run_admin("-c", write_ini(tmp_path / "t.ini", target_url), "import",
                             str(bad))
    assert code == 1 and message in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_export_of_an_unknown_user_fails_cleanly(tmp_path):
    ini = write_ini(tmp_path / "t.ini", f"sqlite:///{tmp_path / 'db.sqlite'}")
    code, _, err = run_admin("-c", ini, "export", "nobody", str(tmp_path / "x.jsonl"))
    assert code == 1 and "there is no user 'nobody'" in err
