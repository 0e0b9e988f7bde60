"""Small helpers shared by the API tests."""

import base64
import hashlib

import argon2

from syncserver.auth.passwords import PasswordHasher


def sync_username(email):
    """The username a Sync 1.1 client derives from an e-mail address."""
    digest = hashlib.sha1(email.lower().encode("utf-8")).digest()
    return base64.b32encode(digest).decode("ascii").lower()


def basic_auth(username, password):
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return {"Authorization": "Basic " + token}


def app_settings(sqluri, **overrides):
    """``[app:main]`` keys for a test server on ``sqluri``."""
    settings = {
        "storage.sqluri": sqluri,
        "storage.create_tables": "true",
        "auth.sqluri": sqluri,
        "auth.create_tables": "true",
    }
    settings.update(overrides)
    return settings


def cheap_password_hasher():
    """argon2id with the smallest parameters, passed explicitly: the suite must stay fast."""
    return PasswordHasher(argon2.Parameters(
        type=argon2.Type.ID, version=19, salt_len=16, hash_len=32,
        time_cost=1, memory_cost=8, parallelism=1))
