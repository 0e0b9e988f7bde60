"""An example authentication plugin: the accounts in one JSON file.

Name it in the ini file with its key of its own::

    auth.backend = file_auth.FileAuth
    auth.accounts_file = /var/lib/syncserver/accounts.json

The file looks like ``{"next_id": 3, "users": {"alice": {"user_id": 1,
"password": "$argon2id$...", "email": "alice@example.org", "enabled": true}}}``.
Passwords are argon2id hashes made by :mod:`syncserver.auth.passwords`. Every
change rewrites the whole file (a temporary file renamed over it) under a
lock, so this suits a handful of accounts served by one process.
"""

import json
import os
import tempfile
import threading

from syncserver.auth import AuthBackend, AuthUnavailable, User, UserExists, UserNotFound
from syncserver.auth.credentials_cache import CredentialsCache
from syncserver.auth.passwords import hash_password, verify_password
from syncserver.auth.usernames import is_valid_username
from syncserver.errors import ConfigError


class FileAuth(AuthBackend):
    """Accounts in a JSON file; see the module docstring."""

    extra_settings = ("accounts_file",)

    def __init__(self, path, credentials_cache_seconds=300, hasher=None):
        self.path = path
        self.hasher = hasher  # None: syncserver's default argon2id parameters
        self.cache = CredentialsCache(credentials_cache_seconds)
        self._lock = threading.Lock()
        self._changes = 0  # bumped by every change: a check that overlapped one is not cached

    @classmethod
    def from_settings(cls, settings):
        path = settings.options.get("accounts_file")
        if not path:
            raise ConfigError("auth.accounts_file is required by file_auth.FileAuth.")
        return cls(path, settings.credentials_cache_seconds)

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
        user = self.cache.lookup(username, password)
        if user is not None:
            return user
        changes = self._changes
        entry = self._entry(username)
        if entry is None or not entry["enabled"]:
            return None
        if not verify_password(password, entry["password"], self.hasher):
            return None
        user = _user(username, entry)
        if changes == self._changes:
            self.cache.remember(username, password, user)
        return user

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
            self._forget(username)
        return True

    # --- the file -------------------------------------------------------------------

    def _change(self, username, **fields):
        with self._lock:
            data = self._load()
            if username not in data["users"]:
                raise UserNotFound(f"no account named {username!r}")
            data["users"][username].update(fields)
            self._save(data)
            self._forget(username)

    def _forget(self, username):
        self._changes += 1
        self.cache.forget_user(username)

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
