"""The conformance suite every account-managing authentication backend must pass.

Subclass :class:`AuthConformanceTests` in a test module and provide an
``auth`` fixture that yields a backend able to create accounts
(``manages_accounts`` true)::

    from syncserver.testing.auth_conformance import AuthConformanceTests

    class TestMyAuth(AuthConformanceTests):
        @pytest.fixture
        def auth(self):
            backend = MyAuth.from_settings(...)
            yield backend
            backend.close()

The backend may hold other accounts: every test makes its own usernames.
Each test checks one rule of :mod:`syncserver.auth` through the public
interface only. Enabling and disabling accounts is left out: a directory
decides that itself.
"""

import uuid

import pytest

from syncserver.auth import UserExists, UserNotFound

PASSWORD = "correct horse battery"
ODD_PASSWORDS = [":colon first", "bang!", "at@sign", "equals=", " space first", "tab\tin",
                 "new\nline", "αβγ non-ASCII", "snow ☃ man", "*)(uid=*)\\", "trailing "]
INVALID_USERNAMES = ["", "*", "a" * 33, "with space", "slash/", "al*ce", "x\x00", "é"]


def new_username():
    """A fresh, valid username (32 characters at most)."""
    return "c" + uuid.uuid4().hex[:20]


class AuthConformanceTests:
    """Rules every :class:`~syncserver.auth.AuthBackend` that manages accounts follows."""

    @pytest.fixture
    def auth(self):  # pragma: no cover - provided by the subclass
        raise NotImplementedError("provide an 'auth' fixture yielding the backend")

    @pytest.fixture
    def account(self, auth):
        username = new_username()
        auth.create_user(username, PASSWORD, f"{username}@example.org")
        yield username
        auth.delete_user(username)

    def test_manages_accounts(self, auth):
        assert auth.manages_accounts

    def test_created_account_authenticates(self, auth):
        username = new_username()
        created = auth.create_user(username, PASSWORD, "someone@example.org")
        assert created.username == username
        assert created.email == "someone@example.org"
        assert created.enabled
        user = auth.authenticate(username, PASSWORD)
        assert user is not None
        assert user.user_id == created.user_id
        assert user.username == username

    def test_get_user(self, auth, account):
        user = auth.get_user(account)
        assert user.username == account
        assert user.email == f"{account}@example.org"
        assert user.enabled
        assert auth.get_user(new_username()) is None

    @pytest.mark.parametrize("password", ["wrong password", "", PASSWORD.upper(),
                                          PASSWORD + " ", PASSWORD[:-1], "*"])
    def test_wrong_password_is_none(self, auth, account, password):
        assert auth.authenticate(account, password) is None

    def test_unknown_user_is_none(self, auth):
        assert auth.authenticate(new_username(), PASSWORD) is None

    @pytest.mark.parametrize("username", INVALID_USERNAMES)
    def test_invalid_usernames_never_match(self, auth, account, username):
        assert auth.authenticate(username, PASSWORD) is None
        assert auth.get_user(username) is None

    def test_user_ids_are_distinct_and_stable(self, auth):
        first, second = new_username(), new_username()
        first_id = auth.create_user(first, PASSWORD, None).user_id
        second_id = auth.create_user(second, PASSWORD, None).user_id
        assert first_id != second_id
        assert auth.get_user(first).user_id == first_id
        assert auth.authenticate(second, PASSWORD).user_id == second_id
        assert isinstance(first_id, int) and first_id > 0
        auth.delete_user(first)
        auth.delete_user(second)

    def test_existing_username_is_refused(self, auth, account):
        with pytest.raises(UserExists):
            auth.create_user(account, "another password", None)
        assert auth.authenticate(account, PASSWORD) is not None

    @pytest.mark.parametrize("password", ODD_PASSWORDS)
    def test_odd_passwords(self, auth, password):
        username = new_username()
        auth.create_user(username, password, None)
        assert auth.authenticate(username, password) is not None
        assert auth.authenticate(username, password.strip() + "x") is None
        auth.delete_user(username)

    def test_password_change_stops_old_credentials(self, auth, account):
        assert auth.authenticate(account, PASSWORD) is not None  # now remembered
        auth.set_password(account, "a brand new password")
        assert auth.authenticate(account, PASSWORD) is None
        assert auth.authenticate(account, "a brand new password") is not None

    def test_email_change(self, auth, account):
        auth.set_email(account, "changed@example.org")
        assert auth.get_user(account).email == "changed@example.org"
        assert auth.authenticate(account, PASSWORD).email == "changed@example.org"

    def test_changes_to_unknown_users(self, auth):
        with pytest.raises(UserNotFound):
            auth.set_password(new_username(), "a brand new password")
        with pytest.raises(UserNotFound):
            auth.set_email(new_username(), "x@example.org")
        assert auth.delete_user(new_username()) is False

    def test_deletion_stops_credentials(self, auth):
        username = new_username()
        auth.create_user(username, PASSWORD, None)
        assert auth.authenticate(username, PASSWORD) is not None  # now remembered
        assert auth.delete_user(username) is True
        assert auth.authenticate(username, PASSWORD) is None
        assert auth.get_user(username) is None
        assert auth.delete_user(username) is False

    def test_is_healthy(self, auth):
        assert auth.is_healthy() is True
