"""Small helpers shared by the API tests."""

import base64
import hashlib


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
