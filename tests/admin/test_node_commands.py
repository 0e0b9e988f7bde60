"""``syncserver-admin node ...`` against a real ini file and database."""

import io

import pytest

from syncserver.admin.cli import main
from syncserver.nodes import Node
from tests.backends import sql_nodes


@pytest.fixture(params=["sqlite", "mysql"])
def admin_database(request):
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def ini(tmp_path, admin_database):
    path = tmp_path / "production.ini"
    path.write_text(
        "[app:main]\n"
        "use = egg:syncserver\n"
        f"storage.sqluri = {admin_database}\n"
        "storage.create_tables = true\n")
    return path


@pytest.fixture
def node_list(ini, admin_database):
    backend = sql_nodes(admin_database)  # creates the tables
    main(["-c", str(ini), "node", "list"], stdout=io.StringIO())
    yield backend
    backend.close()


def run(ini, *argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(["-c", str(ini), "node", *argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_add_list_set_remove(ini, node_list):
    assert run(ini, "list") == (0, "no nodes\n", "")
    code, out, _ = run(ini, "add", "sync1.example.org", "--capacity", "100")
    assert code == 0 and "https://sync1.example.org/" in out
    run(ini, "add", "http://sync2.example.org:8000", "--capacity", "5", "--no-available",
        "--backoff", "60")
    assert node_list.list_nodes() == [
        Node("https://sync1.example.org/", 100),
        Node("http://sync2.example.org:8000/", 5, 0, False, False, 60)]
    node_list.assign_node("alice")
    code, out, _ = run(ini, "list")
    lines = out.splitlines()
    assert lines[0].split() == ["url", "capacity", "load", "available", "downed", "backoff"]
    assert lines[1].split() == ["https://sync1.example.org/", "100", "1", "yes", "no", "0"]
    assert lines[2].split() == ["http://sync2.example.org:8000/", "5", "0", "no", "no", "60"]

    code, out, _ = run(ini, "set", "https://sync1.example.org/", "--downed", "--capacity", "50")
    assert code == 0
    assert node_list.get_node("https://sync1.example.org/") == Node(
        "https://sync1.example.org/", 50, 1, True, True, 0)
    run(ini, "set", "sync1.example.org", "--no-downed", "--no-available", "--unassign-all")
    assert node_list.get_node("https://sync1.example.org/") == Node(
        "https://sync1.example.org/", 50, 0, False, False, 0)
    assert node_list.assigned_node("alice") is None

    code, out, _ = run(ini, "remove", "http://sync2.example.org:8000/")
    assert code == 0 and "removed" in out
    assert [node.url for node in node_list.list_nodes()] == ["https://sync1.example.org/"]


@pytest.mark.parametrize("argv,message", [
    (("set", "nowhere.example.org", "--capacity", "3"), "there is no node https://nowhere"),
    (("remove", "nowhere.example.org"), "there is no node https://nowhere"),
    (("set", "sync1.example.org"), "nothing to change"),
    (("add", "sync1.example.org", "--capacity", "3"), "already a node"),
])
def test_operator_errors_are_one_sentence(ini, node_list, argv, message):
    node_list.add_node("https://sync1.example.org/", 10)
    code, _out, err = run(ini, *argv)
    assert code == 1
    assert message in err and "Traceback" not in err
    assert node_list.list_nodes() == [Node("https://sync1.example.org/", 10)]


def test_bad_numbers_are_refused_by_the_parser(ini):
    code, _, err = run(ini, "add", "sync1.example.org", "--capacity", "-1")
    assert code == 2 and "capacity" in err
