"""HTTP behaviour of the running server: URL forms, errors, headers, bodies, load, start-up.

Every response goes through :class:`Client`, which checks that it carries a
two-decimal ``X-Weave-Timestamp`` and that a JSON 400 holds a Weave code.
"""

import base64
import http.client
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from .conftest import (
    PASTER,
    Client,
    free_port,
    new_account,
    register,
    require_installed,
    running_server,
    timestamp,
    write_ini,
)

pytestmark = pytest.mark.e2e


# --- URL forms ----------------------------------------------------------------------


def test_user_api_trailing_slash_and_short_version(server, account):
    _, username, _ = account
    client = Client(server.url)
    for path in (f"/user/1.0/{username}", f"/user/1/{username}",
                 f"/user/1.0/{username}/", f"/user/1/{username}/"):
        response = client.get(path)
        assert (response.status, response.text) == (200, "1"), path
    for path in (f"/user/1/{username}/node/weave", f"/user/1/{username}/node/weave/",
                 f"/user/1.0/{username}/node/weave/"):
        response = client.get(path)
        assert (response.status, response.text) == (200, server.url + "/"), path

    # Creating an account through /user/1/<u>/ (trailing slash), as Firefox Home does.
    email, new_user, password = new_account("slash")
    response = client.put(f"/user/1/{new_user}/", {"password": password, "email": email})
    assert (response.status, response.text) == (200, new_user)
    assert client.get(f"/user/1.0/{new_user}").text == "1"
    storage = Client(f"{server.url}/1.1/{new_user}/", new_user, password)
    assert storage.get("info/collections").json() == {}


def test_storage_under_1_0_and_1_and_1_1_is_the_same(server, account):
    _, username, password = account
    v10 = Client(f"{server.url}/1.0/{username}/", username, password)
    v1 = Client(f"{server.url}/1/{username}/", username, password)
    v11 = Client(f"{server.url}/1.1/{username}/", username, password)

    response = v10.put("storage/prefs/prefs-1", {"payload": "from 1.0", "sortindex": 3})
    assert response.status == 200, response
    written = timestamp(response.text)
    for client in (v1, v11):
        response = client.get("storage/prefs/prefs-1")
        assert response.status == 200
        record = response.json()
        assert record["payload"] == "from 1.0"
        assert record["modified"] == written
        response = client.get("storage/prefs/prefs-1/")  # trailing slash
        assert response.status == 200 and response.json()["payload"] == "from 1.0"
        response = client.get("info/collections/")
        assert response.status == 200 and response.json()["prefs"] == written
        response = client.get("storage/prefs/?full=1")
        assert response.status == 200
        assert [r["id"] for r in response.json()] == ["prefs-1"]

    response = v1.post("storage/prefs/", [{"id": "prefs-2", "payload": "from 1"}])
    assert response.status == 200 and response.json()["success"] == ["prefs-2"]
    response = v11.delete("storage/prefs/prefs-2/")
    assert response.status == 200
    assert v10.get("storage/prefs").json() == ["prefs-1"]


# --- authentication -------------------------------------------------------------------


def test_wrong_password_and_missing_credentials_are_401(server, account):
    _, username, password = account
    wrong = Client(f"{server.url}/1.1/{username}/", username, password + "x")
    for method, path in (("GET", "info/collections"), ("GET", "storage/bookmarks"),
                         ("PUT", "storage/bookmarks/x"), ("DELETE", "storage")):
        body = {"payload": "x"} if method == "PUT" else None
        response = wrong.request(method, path, body, headers={"X-Confirm-Delete": "1"})
        assert response.status == 401, response

    anonymous = Client(f"{server.url}/1.1/{username}/")
    response = anonymous.get("info/collections")
    assert response.status == 401
    assert response.headers.get("WWW-Authenticate", "").lower().startswith("basic")

    # Deleting the account with a wrong password does nothing.
    response = wrong.delete(f"/user/1.0/{username}")
    assert response.status == 401
    assert Client(server.url).get(f"/user/1.0/{username}").text == "1"
    good = Client(f"{server.url}/1.1/{username}/", username, password)
    response = good.get("info/collections")
    if response.status == 429:
        # Five wrong passwords from this address just now: the login throttle
        # asks for a pause (unless a second boundary passed meanwhile).
        assert int(response.headers["Retry-After"]) <= 1, response
        time.sleep(int(response.headers["Retry-After"]))
        response = good.get("info/collections")
    assert response.status == 200, response


def test_path_username_must_match_the_authenticated_user(server, account):
    _, username, password = account
    _, other, other_password = register(server, "other")
    # Good credentials of one user, the other's path, both ways.
    as_me = Client(server.url, username, password)
    as_other = Client(server.url, other, other_password)
    for client, victim in ((as_me, other), (as_other, username)):
        for method, path in (("GET", f"/1.1/{victim}/info/collections"),
                             ("GET", f"/1.1/{victim}/storage/bookmarks"),
                             ("PUT", f"/1.1/{victim}/storage/bookmarks/x"),
                             ("DELETE", f"/1.1/{victim}/storage/bookmarks"),
                             ("DELETE", f"/user/1.0/{victim}")):
            body = {"payload": "x"} if method == "PUT" else None
            response = client.request(method, path, body)
            assert response.status == 401, response
    assert Client(server.url).get(f"/user/1.0/{other}").text == "1"
    assert as_other.get(f"/1.1/{other}/storage/bookmarks").json() == []


# --- 404 and 405 --------------------------------------------------------------------------


def test_unknown_paths_are_404(server, account):
    _, username, password = account
    client = Client(server.url, username, password)
    for path in ("/", "/nosuch", f"/2.0/{username}/info/collections",
                 f"/1.1/{username}", f"/1.1/{username}/", f"/1.1/{username}/info",
                 f"/1.1/{username}/info/nosuch", f"/1.1/{username}/nosuch/bookmarks",
                 f"/user/1.1/{username}", f"/user/2/{username}",
                 f"/user/1.0/{username}/node", f"/user/1.0/{username}/node/other",
                 f"/1.1/{username}/storage/bookmarks/a/b",
                 "/user/1.0/someone@example.com", "/misc/1.0/nosuch"):
        response = client.get(path)
        assert response.status == 404, response
    response = client.get(f"/1.1/{username}/storage/bookmarks/no-such-item")
    assert response.status == 404


def test_known_paths_with_the_wrong_method_are_405(server, account):
    _, username, password = account
    client = Client(server.url, username, password)
    cases = [("POST", f"/1.1/{username}/info/collections"),
             ("DELETE", f"/1.1/{username}/info/collections"),
             ("PUT", f"/1.1/{username}/info/quota"),
             ("GET", f"/1.1/{username}/storage"),
             ("POST", f"/1.1/{username}/storage"),
             ("PUT", f"/1.1/{username}/storage"),
             ("POST", f"/1.1/{username}/storage/bookmarks/item"),
             ("HEAD", f"/1.1/{username}/storage/bookmarks"),
             ("POST", f"/user/1.0/{username}"),
             ("PUT", f"/user/1.0/{username}/node/weave"),
             ("GET", f"/user/1.0/{username}/password"),
             ("PUT", "/__heartbeat__"),
             ("DELETE", "/__heartbeat__")]
    for method, path in cases:
        response = client.request(method, path)
        assert response.status == 405, response
        assert response.headers.get("Allow"), response


# --- headers ---------------------------------------------------------------------------


def test_x_weave_timestamp_on_every_kind_of_response(server, account):
    """Client checks the header on every response; here every status the server can give."""
    _, username, password = account
    client = Client(f"{server.url}/1.1/{username}/", username, password)
    seen = {}

    def record(response):
        seen.setdefault(response.status, response)
        return response

    record(client.get("/__heartbeat__"))
    response = record(client.request("HEAD", "/__heartbeat__"))
    assert response.status == 200 and response.body == b""
    record(client.get("info/collections"))
    response = record(client.put("storage/tabs/t1", {"payload": "tab"}))
    assert response.weave_timestamp == timestamp(response.text)
    response = record(client.put("storage/tabs/t1", b"{not json"))
    assert (response.status, response.json()) == (400, 6)
    response = record(client.put("storage/tabs/t1", {"payload": 5}))
    assert (response.status, response.json()) == (400, 8)
    response = record(client.delete("storage"))
    assert (response.status, response.json()) == (400, 4)
    response = record(client.get("storage/tabs?newer=abc"))
    assert response.status == 400
    response = record(client.put("storage/tabs/t1", {"payload": "x"},
                                 headers={"X-If-Unmodified-Since": "garbage"}))
    assert response.status == 400
    record(Client(f"{server.url}/1.1/{username}/").get("info/collections"))  # 401
    record(client.get("storage/tabs/missing"))  # 404
    record(client.get("/nosuch"))  # 404
    record(client.request("POST", "info/collections"))  # 405
    response = record(client.put("storage/tabs/t2", {"payload": "y"},
                                 headers={"X-If-Unmodified-Since": "1000000000.00"}))
    assert response.status == 412
    assert {200, 400, 401, 404, 405, 412} <= set(seen)


def test_json_bodies_with_other_content_types(server, account):
    """Clients send JSON as text/plain or form-encoded; the body is JSON whatever the header."""
    client = Client(server.url)
    for content_type in ("text/plain", "application/x-www-form-urlencoded",
                         "text/plain; charset=UTF-8", None):
        email, username, password = new_account("ctype")
        response = client.put(f"/user/1.0/{username}",
                              json.dumps({"password": password, "email": email}),
                              content_type=content_type)
        assert (response.status, response.text) == (200, username), content_type
        storage = Client(f"{server.url}/1.1/{username}/", username, password)
        response = storage.put("storage/forms/f1", json.dumps({"payload": "put " + str(content_type)}),
                               content_type=content_type)
        assert response.status == 200, response
        response = storage.post("storage/forms",
                                json.dumps([{"id": "f2", "payload": "post"},
                                            {"id": "f3", "payload": "post", "sortindex": 2}]),
                                content_type=content_type)
        assert response.status == 200, response
        assert response.json()["success"] == ["f2", "f3"]
        # A single object PUT to the collection URL is a PUT of that item.
        response = storage.put("storage/forms", json.dumps({"id": "f4", "payload": "single"}),
                               content_type=content_type)
        assert response.status == 200, response
        assert timestamp(response.text) == response.weave_timestamp
        records = {r["id"]: r for r in storage.get("storage/forms?full=1").json()}
        assert records["f1"]["payload"] == "put " + str(content_type)
        assert records["f4"]["payload"] == "single"
        assert set(records) == {"f1", "f2", "f3", "f4"}
        response = storage.post(f"/user/1.0/{username}/email", "new-" + email,
                                content_type=content_type)
        assert (response.status, response.text) == (200, "new-" + email)


def test_what_real_clients_send(server, account):
    """Metrics markers in query strings, X-Confirm-Delete: true, percent-encoded {GUID} ids."""
    _, username, password = account
    client = Client(f"{server.url}/1.1/{username}/", username, password)
    marker = "?client=FxHome&v=1.1b2"
    for path in ("info/collections", "info/collection_counts", "info/quota",
                 "info/collection_usage", "storage/history"):
        response = client.get(path + marker)
        assert response.status == 200, response
    for item_id, encoded in (("{8a0fa6c6-4c1d-4a3a-bd9d-2f24b0f0e2a1}",
                              "%7B8a0fa6c6-4c1d-4a3a-bd9d-2f24b0f0e2a1%7D"),
                             ("a#b?c~d", "a%23b%3Fc~d")):
        response = client.put(f"storage/addons/{encoded}", {"payload": item_id})
        assert response.status == 200, response
        response = client.get(f"storage/addons/{encoded}{marker}")
        assert response.status == 200, response
        assert response.json()["id"] == item_id
        assert response.json()["payload"] == item_id
        response = client.delete(f"storage/addons/{encoded}{marker}")
        assert response.status == 200, response
        assert client.get(f"storage/addons/{encoded}").status == 404
    response = client.put("storage/addons/x", {"payload": "x"})
    assert response.status == 200
    response = client.delete("storage" + marker, headers={"X-Confirm-Delete": "true"})
    assert response.status == 200, response
    assert client.get("info/collections").json() == {}
    response = Client(server.url).get(f"/user/1.0/{username}{marker}")
    assert (response.status, response.text) == (200, "1")
    response = Client(server.url).get(f"/user/1.0/{username}/node/weave{marker}")
    assert response.status == 200


# --- load -------------------------------------------------------------------------------


def test_fifty_concurrent_connections(server):
    """A busy household: 50 connections at once, none refused, no 5xx, every write kept."""
    _, username, password = register(server, "busy")
    threads_count = 50
    barrier = threading.Barrier(threads_count)
    failures = []
    results = {}

    def worker(index):
        client = None
        try:
            client = Client(f"{server.url}/1.1/{username}/", username, password, timeout=120)
            client.connection.connect()  # all 50 sockets open before anyone sends
            barrier.wait(timeout=60)
            statuses = []
            for step in range(3):
                item = f"t{index:02d}-{step}"
                statuses.append(client.put(f"storage/history/{item}",
                                           {"payload": f"visit {index} {step}"}).status)
                statuses.append(client.get("info/collections").status)
                statuses.append(client.get(f"storage/history/{item}").status)
            statuses.append(client.post("storage/history",
                                        [{"id": f"b{index:02d}", "payload": "batch"}]).status)
            statuses.append(client.get("storage/history?full=1&limit=5").status)
            results[index] = statuses
        except Exception as error:
            failures.append((index, repr(error)))
        finally:
            if client is not None:
                client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not failures, f"{len(failures)} connections failed: {failures[:5]}\n{server.stderr()[-3000:]}"
    assert len(results) == threads_count
    bad = {i: s for i, s in results.items() if any(status != 200 for status in s)}
    assert not bad, f"non-200 answers: {bad}\n{server.stderr()[-3000:]}"

    client = Client(f"{server.url}/1.1/{username}/", username, password)
    ids = set(client.get("storage/history").json())
    expected = {f"t{i:02d}-{s}" for i in range(threads_count) for s in range(3)}
    expected |= {f"b{i:02d}" for i in range(threads_count)}
    assert ids == expected
    assert client.get("info/collection_counts").json() == {"history": len(expected)}


# --- start-up ----------------------------------------------------------------------------


def test_the_server_creates_its_var_sqlite_file_and_keeps_data_across_restarts(tmp_path):
    database = tmp_path / "var" / "syncserver.db"
    assert not (tmp_path / "var").exists()
    # %(here)s is the folder of the override ini, as in development.ini's own default.
    sqluri = "sqlite:///%(here)s/var/syncserver.db"
    with running_server(tmp_path, sqluri=sqluri) as server:
        assert database.is_file()
        _, username, password = register(server, "restart")
        client = Client(f"{server.url}/1.1/{username}/", username, password)
        response = client.put("storage/prefs/p", {"payload": "kept"})
        assert response.status == 200
        written = timestamp(response.text)
        client.close()
    with running_server(tmp_path, sqluri=sqluri) as server:
        client = Client(f"{server.url}/1.1/{username}/", username, password)
        response = client.get("storage/prefs/p")
        assert response.status == 200
        assert response.json()["payload"] == "kept"
        assert client.get("info/collections").json() == {"prefs": written}
        client.close()


@pytest.mark.parametrize("key, value", [
    ("storage.backend", "nosuchbackend"),
    ("storage.quota_sise", "5120"),
    ("storage.batch_max_count", "lots"),
])
def test_a_config_error_stops_paster_serve_naming_the_key(tmp_path, key, value):
    require_installed()
    ini = write_ini(tmp_path, free_port(), {key: value})
    try:
        finished = subprocess.run([str(PASTER), "serve", str(ini)], cwd=tmp_path,
                                  capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"paster serve kept running with {key} = {value}")
    stderr = finished.stderr.decode("utf-8", "replace")
    assert finished.returncode != 0, stderr
    assert key in stderr, stderr


def test_heartbeat_with_urllib(server):
    """A monitoring script with urllib.request: 200 and a JSON body, HEAD too."""
    with urllib.request.urlopen(server.url + "/__heartbeat__", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers.get("X-Weave-Timestamp")
        json.loads(answer.read())
    request = urllib.request.Request(server.url + "/__heartbeat__", method="HEAD")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(server.url + "/nosuch", timeout=10)
    assert error.value.code == 404
    assert error.value.headers.get("X-Weave-Timestamp")


def test_basic_auth_with_an_email_address_as_username_is_refused_for_the_hash_path(server, account):
    """The path holds the hash, so the header must too (byte-identical): the e-mail gives 401."""
    email, username, password = account
    token = base64.b64encode(f"{email}:{password}".encode()).decode()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("GET", f"/1.1/{username}/info/collections",
                       headers={"Authorization": "Basic " + token})
    response = connection.getresponse()
    response.read()
    assert response.status == 401
    assert response.headers.get("X-Weave-Timestamp")
    connection.close()


@pytest.mark.parametrize("accept", [None, "application/json", "application/json;q=0.9,*/*;q=0.2"])
def test_plain_400s_stay_plain_whatever_the_accept_header(server, account, accept):
    """A 400 with a JSON body must be a Weave code: clients read a JSON 400 body as one.

    Bad query values and a bad X-If-Unmodified-Since are plain-text 400s in the
    reference; they must not turn into a JSON object when the client accepts JSON.
    """
    _, username, password = account
    client = Client(f"{server.url}/1.1/{username}/", username, password)
    headers = {"Accept": accept} if accept else {}
    for method, path, extra in (("GET", "storage/history?newer=abc", {}),
                                ("GET", "storage/history?limit=2.0", {}),
                                ("DELETE", "storage/history?older=x", {}),
                                ("PUT", "storage/history/x", {"X-If-Unmodified-Since": "x"})):
        body = {"payload": "x"} if method == "PUT" else None
        response = client.request(method, path, body, headers=dict(headers, **extra))
        assert response.status == 400, response
        if response.content_type == "application/json":
            code = json.loads(response.body)
            assert isinstance(code, int), f"{method} {path} Accept={accept}: JSON 400 body {code!r}"


@pytest.mark.parametrize("query", ["ids=%ff%fe", "newer=%80", "%ff=1", "full=%C3%28"])
def test_query_strings_that_are_not_utf8_are_not_a_500(server, account, query):
    """Percent-escapes that do not decode as UTF-8: a 400 (or ignored), never a crash."""
    _, username, password = account
    client = Client(f"{server.url}/1.1/{username}/", username, password)
    for method in ("GET", "DELETE"):
        response = client.request(method, f"storage/history?{query}")
        assert response.status < 500, response
    response = client.get(f"info/collections?{query}")
    assert response.status == 200, response


def test_json_escapes_utf8_cannot_encode_are_not_a_500(server, account):
    r"""``"\ud800"`` is valid JSON; a payload or password holding it is stored or refused (400)."""
    _, username, password = account
    client = Client(f"{server.url}/1.1/{username}/", username, password)
    response = client.put("storage/history/sur", b'{"payload": "\\ud800"}')
    assert response.status in (200, 400), response
    response = client.post("storage/history", b'[{"id": "sur2", "payload": "a\\udfffb"}]')
    assert response.status in (200, 400), response
    email, new_user, _ = new_account("surrogate")
    response = Client(server.url).put(
        f"/user/1.0/{new_user}",
        b'{"email": "' + email.encode() + b'", "password": "longenough\\ud800"}')
    assert response.status == 400, response


def test_chunked_and_expect_100_continue_uploads(server, account):
    """Script clients (curl, http.client) stream bodies: chunked, or after 100 Continue."""
    _, username, password = account
    client = Client(f"{server.url}/1.1/{username}/", username, password)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("POST", f"/1.1/{username}/storage/forms",
                       body=iter([b'[{"id": "chunk1", ', b'"payload": "chunked"}]']),
                       headers={"Authorization": client.auth_header()}, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 200
    assert json.loads(response.read())["success"] == ["chunk1"]
    connection.close()

    body = json.dumps([{"id": f"e{i}", "payload": "x" * 100} for i in range(20)]).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall((f"POST /1.1/{username}/storage/forms HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      f"Authorization: {client.auth_header()}\r\nContent-Length: {len(body)}\r\n"
                      "Expect: 100-continue\r\nConnection: close\r\n\r\n").encode())
        assert sock.recv(25).startswith(b"HTTP/1.1 100")
        sock.sendall(body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.split(b"\r\n", 1)[0].endswith(b"200 OK"), answer[:200]
    stored = client.get("storage/forms").json()
    assert {"chunk1", "e0", "e19"} <= set(stored)


def test_deleting_the_account_deletes_its_data(server):
    email, username, password = register(server, "delete-me")
    storage = Client(f"{server.url}/1.1/{username}/", username, password)
    assert storage.put("storage/bookmarks/b1", {"payload": "secret"}).status == 200
    response = storage.delete(f"/user/1.0/{username}")
    assert (response.status, response.text) == (200, "1")
    anonymous = Client(server.url)
    assert anonymous.get(f"/user/1.0/{username}").text == "0"
    assert anonymous.get(f"/user/1.0/{username}/node/weave").status == 404
    assert storage.get("info/collections").status == 401
    # The same address registers again and finds nothing of the old account.
    response = anonymous.put(f"/user/1.0/{username}", {"password": password, "email": email})
    assert response.status == 200
    assert storage.get("info/collections").json() == {}
    assert storage.get("storage/bookmarks/b1").status == 404


def test_password_and_email_changes_take_effect_at_once(server):
    email, username, password = register(server, "change")
    storage = Client(f"{server.url}/1.1/{username}/", username, password)
    assert storage.get("info/collections").status == 200  # the good credentials are now cached
    response = storage.post(f"/user/1.0/{username}/password", "a new password 123",
                            content_type="text/plain")
    assert (response.status, response.text) == (200, "success")
    # The old password stops working immediately, even though it was cached.
    assert storage.get("info/collections").status == 401
    fresh = Client(f"{server.url}/1.1/{username}/", username, "a new password 123")
    assert fresh.get("info/collections").status == 200
    # Weak new passwords are refused with a plain 400 and change nothing.
    response = fresh.post(f"/user/1.0/{username}/password", "short", content_type="text/plain")
    assert response.status == 400
    assert fresh.get("info/collections").status == 200
    response = fresh.post(f"/user/1.0/{username}/email", "changed-" + email,
                          content_type="text/plain")
    assert (response.status, response.text) == (200, "changed-" + email)
    response = fresh.post(f"/user/1.0/{username}/email", "not an address",
                          content_type="text/plain")
    assert (response.status, response.json()) == (400, 12)


def test_password_reset_is_503_when_not_configured(server, account):
    _, username, password = account
    client = Client(server.url, username, password)
    for method in ("GET", "DELETE"):
        response = client.request(method, f"/user/1.0/{username}/password_reset")
        assert response.status == 503, response
        assert response.headers.get("Retry-After")
        assert isinstance(response.json(), str)
