"""An example authentication plugin: the accounts in one JSON file.

Name it in the ini file with its key of its own (declared by
:class:`FileAuthSettings`, so the server checks it at start-up)::

    auth.backend = file_auth.FileAuth
    auth.accounts_file = /var/lib/syncserver/accounts.json

The file looks like ``{"next_id": 3, "users": {"alice": {"user_id": 1,
"password": "$argon2id$...", "email": "alice@example.org", "enabled": true}}}``.
Passwords are argon2id hashes made by :mod:`syncserver.auth.passwords`. Every
change rewrites the whole file (a temporary file renamed over it) under a
lock, so this suits a handful of accounts served by one process.

The plugin only looks users up and checks passwords: the server remembers
good logins in front of it and makes every process forget them on a change.
"""

import dataclasses
import json
import os
import tempfile
import threading

from syncserver.auth import AuthBackend, AuthUnavailable, User, UserExists, UserNotFound
from syncserver.auth.passwords import hash_password, verify_password
from syncserver.auth.usernames import is_valid_username
from syncserver.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class FileAuthSettings:
    """The plugin's own ``auth.*`` keys."""

    #: The JSON file holding the accounts (created on the first registration).
    accounts_file: str | None = None


class FileAuth(AuthBackend):
    """Accounts in a JSON file; see the module docstring."""

    settings_class = FileAuthSettings

    def __init__(self, path, hasher=None):
        self.path = path
        self.hasher = hasher  # None: syncserver's default argon2id parameters
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings):
        path = settings.backend_settings.accounts_file
        if not path:
            raise ConfigError("auth.accounts_file is required by file_auth.FileAuth.")
        return cls(path)

    # --- reads ------------------------------------------------------------------

    def is_healthy(self):
        try:
            self._load()
        except AuthUnavailable:
            return False
        return True

    def get_user(self, username):
        entry = self._entry(username)
        return None if entry is None else _user(username, entry)

    def authenticate(self, username, password):
        if not isinstance(password, str) or not password:
            return None
        entry = self._entry(username)
        if entry is None or not entry["enabled"]:
            return None
        if not verify_password(password, entry["password"], self.hasher):
            return None
        return _user(username, entry)

    def list_users(self, after=None, limit=100):
        users = self._load()["users"]
        names = sorted(name for name in users if after is None or name > after)
        return [_user(name, users[name]) for name in names[:limit]]

    # --- writes -----------------------------------------------------------------

    def create_user(self, username, password, email):
        if not is_valid_username(username):
            raise ValueError("a username is 1 to 32 characters of [a-zA-Z0-9._-]")
        if not isinstance(password, str) or not password:
            raise ValueError("a password is required")
        hashed = hash_password(password, self.hasher)  # slow: outside the lock
        with self._lock:
            data = self._load()
            if username in data["users"]:
                raise UserExists(f"the username {username!r} is taken")
            user_id, data["next_id"] = data["next_id"], data["next_id"] + 1
            data["users"][username] = {"user_id": user_id, "password": hashed,
                                       "email": email, "enabled": True}
            self._save(data)
        return User(user_id, username, email)

    def set_password(self, username, new_password):
        hashed = hash_password(new_password, self.hasher)
        self._change(username, password=hashed)

    def set_email(self, username, email):
        self._change(username, email=email)

    def set_enabled(self, username, enabled):
        self._change(username, enabled=bool(enabled))

    def delete_user(self, username):
        with self._lock:
            data = self._load()
            if data["users"].pop(username, None) is None:
                return False
            self._save(data)  # user ids are never reused: next_id stays
        return True

    # --- the file -------------------------------------------------------------------

    def _change(self, username, **fields):
        with self._lock:
            data = self._load()
            if username not in data["users"]:
                raise UserNotFound(f"no account named {username!r}")
            data["users"][username].update(fields)
            self._save(data)

    def _entry(self, username):
        if not is_valid_username(username):
            return None
        return self._load()["users"].get(username)

    def _load(self):
        try:
            with open(self.path, encoding="utf-8") as source:
                return json.load(source)
        except FileNotFoundError:
            return {"next_id": 1, "users": {}}
        except (OSError, ValueError) as error:
            raise AuthUnavailable(f"cannot read {self.path}: {error}") from None

    def _save(self, data):
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            with tempfile.NamedTemporaryFile("w", dir=folder, delete=False,
                                             encoding="utf-8") as out:
                json.dump(data, out, indent=1)
            os.replace(out.name, self.path)
        except OSError as error:
            raise AuthUnavailable(f"cannot write {self.path}: {error}") from None


def _user(username, entry):
    return User(user_id=entry["user_id"], username=username, email=entry["email"],
                enabled=entry["enabled"])
