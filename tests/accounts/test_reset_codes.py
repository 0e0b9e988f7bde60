"""The SQL reset-code store on SQLite, MariaDB and PostgreSQL."""

import sqlalchemy

from syncserver.accounts.reset_codes import CODE_RE, reset_codes
from tests.backends import reset_code_store


class Clock:
    def __init__(self):
        self.now = 1_700_000_000

    def __call__(self):
        return self.now


def make_store(url, lifetime=600):
    clock = Clock()
    return reset_code_store(url, lifetime, clock=clock), clock


def test_code_works_once_and_only_for_its_user(database_url):
    store, _ = make_store(database_url)
    try:
        code = store.issue(7)
        assert CODE_RE.fullmatch(code)
        assert store.has_code(7)
        assert not store.redeem(8, code)
        assert store.redeem(7, code.lower())  # typed codes may vary in case
        assert not store.has_code(7)
        assert not store.redeem(7, code)
    finally:
        store.close()


def test_only_the_hash_is_stored(database_url):
    store, _ = make_store(database_url)
    try:
        code = store.issue(1)
        with store.engine.connect() as connection:
            stored = connection.execute(sqlalchemy.select(reset_codes.c.code_hash)).scalar_one()
        assert code not in stored and len(stored) == 64
    finally:
        store.close()


def test_new_code_replaces_the_old_one(database_url):
    store, _ = make_store(database_url)
    try:
        first = store.issue(1)
        second = store.issue(1)
        assert first != second
        assert not store.redeem(1, first)
        assert store.redeem(1, second)
    finally:
        store.close()


def test_wrong_and_malformed_codes_are_refused_without_using_up_the_code(database_url):
    store, _ = make_store(database_url)
    try:
        code = store.issue(1)
        wrong = ("A" if code[0] != "A" else "B") + code[1:]
        for attempt in (wrong, "", "nonsense", None, code + "X", "' OR 1=1 --"):
            assert not store.redeem(1, attempt)
        assert store.redeem(1, code)
    finally:
        store.close()


def test_expired_code_is_refused_and_deleted(database_url):
    store, clock = make_store(database_url, lifetime=600)
    try:
        code = store.issue(1)
        clock.now += 599
        assert store.has_code(1)
        clock.now += 1
        assert not store.has_code(1)
        assert not store.redeem(1, code)
        with store.engine.connect() as connection:
            assert connection.execute(sqlalchemy.select(reset_codes)).all() == []
    finally:
        store.close()


def test_clear(database_url):
    store, _ = make_store(database_url)
    try:
        code = store.issue(1)
        store.issue(2)
        assert store.clear(1)
        assert not store.clear(1)
        assert not store.redeem(1, code)
        assert store.has_code(2)
    finally:
        store.close()


def test_issuing_purges_expired_codes_of_others(sqlite_url):
    store, clock = make_store(sqlite_url, lifetime=60)
    try:
        store.issue(1)
        clock.now += 60
        store.issue(2)
        with store.engine.connect() as connection:
            rows = connection.execute(sqlalchemy.select(reset_codes.c.userid)).scalars().all()
        assert rows == [2]
    finally:
        store.close()
