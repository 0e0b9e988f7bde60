"""production.ini itself, run by ``gunicorn --paste`` and by ``paster serve``, on MariaDB.

The test copies production.ini and changes only where the database is (a
fresh one, reached as root with ``${SYNCSERVER_DB_PASSWORD}`` left in the
URL and set empty) and, for paster, the port: the logging sections, the
access log and every other key are the shipped ones.
"""

import os
import re
import subprocess
import sys

import pytest
import redis
import sqlalchemy

from tests.deploy.conftest import PRODUCTION_INI, GunicornServer, stop_process, wait_for_heartbeat
from tests.e2e.conftest import Client, new_account
from tests.services import free_port

pytestmark = [pytest.mark.deploy, pytest.mark.mysql]

PASTER = sys.executable.rsplit("/", 1)[0] + "/paster"


def production_ini_copy(directory, mysql_url, redis_url, port=None):
    """production.ini with its database and Redis URLs pointing at the test's own."""
    url = sqlalchemy.engine.make_url(mysql_url)
    sqluri = (f"mysql+mysqldb://{url.username}:${{SYNCSERVER_DB_PASSWORD}}"
              f"@{url.host}:{url.port}/{url.database}")
    text = PRODUCTION_INI.read_text()
    text, count = re.subn(r"^storage\.sqluri = .*$", f"storage.sqluri = {sqluri}", text,
                          flags=re.MULTILINE)
    # The accounts follow storage.sqluri: changing that one line moves them too.
    assert count == 1, "production.ini should set storage.sqluri (and only storage's)"
    assert not re.search(r"^auth\.sqluri", text, flags=re.MULTILINE)
    text, count = re.subn(r"^storage\.redis_url = .*$", f"storage.redis_url = {redis_url}", text,
                          flags=re.MULTILINE)
    assert count == 1, "production.ini should put Redis in front of the database"
    if port is not None:
        text = re.sub(r"^port = \d+$", f"port = {port}", text, flags=re.MULTILINE)
    ini = directory / "production.ini"
    ini.write_text(text)
    return ini


ENVIRONMENT = {"SYNCSERVER_DB_PASSWORD": "", "SYNCSERVER_SHARED_SECRET": "test-secret",
               "SYNCSERVER_MASTER_SECRET": "test-master-secret"}


def short_sync(base_url):
    """Register, upload, read back; return the username."""
    email, username, password = new_account("production")
    registration = Client(base_url + "/")
    response = registration.put(f"user/1.0/{username}", {"password": password, "email": email})
    assert (response.status, response.text) == (200, username)
    response = registration.get(f"user/1.0/{username}/node/weave")
    assert (response.status, response.text) == (200, base_url + "/")
    client = Client(f"{base_url}/1.1/{username}/", username, password)
    records = [{"id": f"h{i}", "payload": f"visit {i}"} for i in range(20)]
    response = client.post("storage/history", records)
    assert response.status == 200, response
    assert response.json()["success"] == [record["id"] for record in records]
    response = client.get("storage/history?full=1&sort=index")
    assert response.status == 200
    assert {record["id"]: record["payload"] for record in response.json()} == {
        record["id"]: record["payload"] for record in records}
    assert client.get("info/collection_counts").json() == {"history": 20}
    client.close()
    registration.close()
    return username


def test_gunicorn_paste_production_ini(tmp_path, mysql_url, redis_url):
    ini = production_ini_copy(tmp_path, mysql_url, redis_url)
    server = GunicornServer(ini, tmp_path)
    try:
        server.start(ENVIRONMENT)
        username = short_sync(server.url)
    finally:
        server.stop()
    # The reads went through production.ini's Redis cache.
    cache = redis.Redis.from_url(redis_url)
    assert cache.keys("syncserver:*"), "production.ini's Redis cache was not used"
    cache.close()
    # production.ini's access log (stdout, combined format), one line per request.
    lines = [line for line in server.stdout().splitlines() if f"/1.1/{username}/" in line]
    assert any(f' - {username} [' in line and '"POST /1.1/' in line and '" 200 ' in line
               for line in lines), server.stdout()[-3000:]
    assert all(re.search(r" \d+\.\d$", line) for line in lines), lines


def test_paster_serve_production_ini(tmp_path, mysql_url, redis_url):
    port = free_port()
    ini = production_ini_copy(tmp_path, mysql_url, redis_url, port)
    with open(tmp_path / "paster.stdout", "wb") as out, \
            open(tmp_path / "paster.stderr", "wb") as err:
        process = subprocess.Popen([PASTER, "serve", str(ini)], cwd=tmp_path, stdout=out,
                                   stderr=err, stdin=subprocess.DEVNULL,
                                   env={**os.environ, **ENVIRONMENT})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_heartbeat(url + "/__heartbeat__", process,
                           lambda: (tmp_path / "paster.stderr").read_text()[-5000:])
        username = short_sync(url)
    finally:
        stop_process(process)
    stdout = (tmp_path / "paster.stdout").read_text()
    assert f' - {username} [' in stdout, stdout[-3000:]


def test_a_missing_secret_stops_the_server_naming_the_key(tmp_path, mysql_url, redis_url):
    ini = production_ini_copy(tmp_path, mysql_url, redis_url)
    environment = {"SYNCSERVER_DB_PASSWORD": ""}
    finished = subprocess.run(
        [PASTER, "serve", str(ini)], cwd=tmp_path, capture_output=True, timeout=60,
        stdin=subprocess.DEVNULL,
        env={key: value for key, value in {**os.environ, **environment}.items()
             if key != "SYNCSERVER_SHARED_SECRET"})
    assert finished.returncode != 0
    stderr = finished.stderr.decode()
    assert "global.shared_secret" in stderr and "SYNCSERVER_SHARED_SECRET" in stderr, stderr
