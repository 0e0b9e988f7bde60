"""The SQL node backend on SQLite, MariaDB/MySQL and PostgreSQL: the rule, the counts, races."""

import collections
import random
import socket
import threading

import pytest
import sqlalchemy

from syncserver.db import Database
from syncserver.errors import BackendUnavailable, ConfigError
from syncserver.nodes import Node, NodeBackend, NodeExists, NodeNotFound, NodesUnavailable
from syncserver.nodes.sql import SQLNodes, nodes, user_nodes
from syncserver.settings import NodeSettings
from tests.backends import open_from_settings, sql_nodes

A = "https://a.example.org/"
B = "https://b.example.org/"
C = "https://c.example.org/"


@pytest.fixture
def backend(database_url):
    built = sql_nodes(database_url)
    yield built
    built.close()


def table_counts(backend):
    """Per node URL: (current_load as stored, user_nodes rows that point at it)."""
    with backend.engine.connect() as connection:
        loads = dict(connection.execute(sqlalchemy.select(nodes.c.url, nodes.c.current_load)).all())
        rows = collections.Counter(connection.execute(
            sqlalchemy.select(nodes.c.url).select_from(
                user_nodes.join(nodes, user_nodes.c.node_id == nodes.c.id))).scalars())
    return {url: (load, rows.get(url, 0)) for url, load in loads.items()}


def test_is_a_node_backend(backend):
    assert isinstance(backend, NodeBackend)


def test_add_list_get_update(backend):
    assert backend.list_nodes() == []
    assert backend.add_node(A, 10) == Node(A, 10, 0, True, False, 0)
    backend.add_node(B, 5, available=False, downed=True, backoff=30)
    assert backend.list_nodes() == [Node(A, 10), Node(B, 5, 0, False, True, 30)]
    assert backend.get_node(B) == Node(B, 5, 0, False, True, 30)
    assert backend.get_node(C) is None
    assert backend.update_node(B, capacity=7, downed=False) == Node(B, 7, 0, False, False, 30)
    assert backend.update_node(B, available=True, backoff=0) == Node(B, 7)
    with pytest.raises(NodeExists):
        backend.add_node(A, 3)
    with pytest.raises(NodeNotFound):
        backend.update_node(C, capacity=1)
    assert backend.get_node(A) == Node(A, 10)


@pytest.mark.parametrize("url,capacity", [("a.example.org", 1), ("ftp://x/", 1), (A, -1), (A, "3")])
def test_bad_node_values_are_refused(backend, url, capacity):
    with pytest.raises(ValueError):
        backend.add_node(url, capacity)
    assert backend.list_nodes() == []


def test_least_loaded_by_fraction_of_capacity(backend):
    backend.add_node(A, 4)
    backend.add_node(B, 2)
    answers = [backend.assign_node(f"user{index}") for index in range(6)]
    # A 0/4 and B 0/2 tie (A was added first); then B 0/2 < A 1/4; then A 1/4 < B 1/2; ...
    assert answers == [A, B, A, B, A, A]
    assert backend.assign_node("user6") is None
    assert table_counts(backend) == {A: (4, 4), B: (2, 2)}


def test_assignment_is_stable_and_counted_once(backend):
    backend.add_node(A, 5)
    backend.add_node(B, 5)
    assert backend.assigned_node("alice") is None
    first = backend.assign_node("alice")
    assert [backend.assign_node("alice") for _ in range(3)] == [first] * 3
    assert backend.assigned_node("alice") == first
    assert sum(node.current_load for node in backend.list_nodes()) == 1


def test_downed_unavailable_and_full_nodes_are_skipped(backend):
    backend.add_node(A, 5, downed=True)
    backend.add_node(B, 5, available=False)
    backend.add_node(C, 0)
    assert backend.assign_node("alice") is None
    backend.update_node(C, capacity=1)
    assert backend.assign_node("alice") == C
    assert backend.assign_node("bob") is None
    assert table_counts(backend) == {A: (0, 0), B: (0, 0), C: (1, 1)}


def test_users_keep_their_node_when_it_is_downed_or_full(backend):
    backend.add_node(A, 1)
    assert backend.assign_node("alice") == A
    backend.update_node(A, downed=True, available=False, capacity=0)
    assert backend.assign_node("alice") == A
    assert backend.assigned_node("alice") == A


def test_release_frees_the_slot(backend):
    backend.add_node(A, 1)
    assert backend.assign_node("alice") == A
    assert backend.assign_node("bob") is None
    assert backend.release_user("alice") is True
    assert backend.release_user("alice") is False
    assert backend.assigned_node("alice") is None
    assert table_counts(backend) == {A: (0, 0)}
    assert backend.assign_node("bob") == A


def test_unassign_all_and_remove(backend):
    backend.add_node(A, 3)
    backend.add_node(B, 3)
    for name in ("u1", "u2", "u3", "u4"):
        backend.assign_node(name)
    on_a = [name for name in ("u1", "u2", "u3", "u4") if backend.assigned_node(name) == A]
    backend.update_node(A, available=False)
    assert backend.unassign_all(A) == len(on_a) == 2
    assert table_counts(backend) == {A: (0, 0), B: (2, 2)}
    assert [backend.assign_node(name) for name in on_a] == [B, None]
    assert backend.remove_node(B) == 3
    assert backend.list_nodes() == [Node(A, 3, 0, False, False, 0)]
    assert all(backend.assigned_node(name) is None for name in ("u1", "u2", "u3", "u4"))
    with pytest.raises(NodeNotFound):
        backend.remove_node(B)
    with pytest.raises(NodeNotFound):
        backend.unassign_all(B)


@pytest.mark.parametrize("capacities,users", [
    ((7, 5, 3), 24),   # more users than slots: exactly 15 assigned, none beyond capacity
    ((10, 5, 0), 9),   # room for everyone: all assigned, shared by fraction of capacity
])
def test_concurrent_first_requests_from_two_processes(database_url, capacities, users):
    """Eight threads on two engines (two server processes) ask for every user twice at once."""
    first = sql_nodes(database_url, pool_size=4)
    second = SQLNodes(Database(database_url, pool_size=4), owns_database=True)
    urls = (A, B, C)
    try:
        for url, capacity in zip(urls, capacities, strict=True):
            first.add_node(url, capacity)
        names = [f"user{index}" for index in range(users)]
        requests = [(name, backend) for name in names for backend in (first, second)]
        random.Random(7).shuffle(requests)
        answers = collections.defaultdict(list)
        errors = []
        threads_count = 8
        barrier = threading.Barrier(threads_count)

        def work(share):
            barrier.wait()
            for name, backend in share:
                try:
                    answers[name].append(backend.assign_node(name))
                except Exception as error:  # reported below, never lost in a thread
                    errors.append(error)

        threads = [threading.Thread(target=work, args=(requests[index::threads_count],))
                   for index in range(threads_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        for name in names:
            assert len(answers[name]) == 2 and answers[name][0] == answers[name][1], name
            assert first.assigned_node(name) == answers[name][0]
        given = collections.Counter(answer for name in names for answer in answers[name][:1])
        slots = sum(capacities)
        assert given[None] == max(0, users - slots)
        counts = table_counts(first)
        for url, capacity in zip(urls, capacities, strict=True):
            load, rows = counts[url]
            assert load == rows == given[url] <= capacity
        if users < slots:
            # Serialised assignments follow the rule exactly: 6/10 and 3/5 of capacity.
            assert (given[A], given[B], given[C]) == (6, 3, 0)
    finally:
        first.close()
        second.close()


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_down_raises_nodes_unavailable():
    backend = SQLNodes(Database(f"postgresql+psycopg://postgres:dbsecret@127.0.0.1:{closed_port()}/x"),
                       owns_database=True)
    try:
        for call in (backend.list_nodes, lambda: backend.get_node(A),
                     lambda: backend.add_node(A, 1), lambda: backend.assign_node("alice"),
                     lambda: backend.assigned_node("alice"), lambda: backend.release_user("a"),
                     lambda: backend.update_node(A, capacity=1)):
            with pytest.raises(NodesUnavailable) as raised:
                call()
            assert isinstance(raised.value, BackendUnavailable)
            assert "dbsecret" not in str(raised.value)
    finally:
        backend.close()


def test_missing_tables_without_create_tables_stop_start_up(database_url):
    settings = NodeSettings(backend=SQLNodes, sqluri=database_url, create_tables=False)
    with pytest.raises(ConfigError, match=r"nodes\.create_tables is false .* no table"):
        open_from_settings(NodeBackend, settings)


def test_from_settings_needs_a_database():
    with pytest.raises(ConfigError, match=r"nodes\.sqluri"):
        SQLNodes.from_settings(NodeSettings(backend=SQLNodes))
