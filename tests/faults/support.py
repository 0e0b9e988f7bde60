"""What the fault tests share: the server's settings, checks of a 503, a hang guard."""

import re
import threading

import pytest

from tests.support import basic_auth, sync_username

#: The only body a 503 may have: a JSON string naming the crash id of the log line.
CRASH_BODY = re.compile(r'^"application error: crash id [0-9a-f]{32}"$')
RETRY_AFTER = 120
#: Seconds a request may take at most before the test calls it a hang (well above the timeouts).
HANG_BOUND = 60

FAULT_SETTINGS = {
    "storage.connect_timeout": "2", "storage.query_timeout": "3",
    "auth.connect_timeout": "2", "auth.query_timeout": "3",
    "storage.pool_timeout": "5", "auth.pool_timeout": "5",
    "global.retry_after": str(RETRY_AFTER),
}


class Account:
    def __init__(self, app, email, password="fault tolerant password"):
        self.username = sync_username(email)
        self.headers = basic_auth(self.username, password)
        self.root = f"/1.1/{self.username}"
        app.put_json(f"/user/1.0/{self.username}", {"email": email, "password": password})


def assert_unavailable(response):
    """503, Retry-After, a crash id and nothing else."""
    assert response.status_int == 503, response
    assert response.headers["Retry-After"] == str(RETRY_AFTER)
    assert response.content_type == "application/json"
    assert CRASH_BODY.match(response.text), response.text


def bounded(call, bound=HANG_BOUND):
    """Run ``call()`` in a thread; fail (instead of hanging) if it has not returned in ``bound``."""
    outcome = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as error:  # re-raised in the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(bound)
    if thread.is_alive():
        pytest.fail(f"the request hung for more than {bound} s", pytrace=False)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
