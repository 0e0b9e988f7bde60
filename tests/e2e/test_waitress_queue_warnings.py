"""``paster serve`` under a burst: waitress's queue warning once per interval, not per request."""

import concurrent.futures
import os
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import RunningServer, free_port

ROOT = Path(__file__).resolve().parents[2]
WARNING = "Task queue depth is"


def serve(tmp_path, **server_options):
    port = free_port()
    options = "".join(f"{name} = {value}\n" for name, value in server_options.items())
    ini = tmp_path / "burst.ini"
    ini.write_text(f"""\
[app:main]
use = config:{ROOT / 'development.ini'}
storage.sqluri = sqlite:///{tmp_path / 'burst.db'}

[server:main]
use = egg:syncserver#waitress
host = 127.0.0.1
port = {port}
threads = 1
{options}
[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = INFO
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = generic

[formatter_generic]
format = %(levelname)s [%(name)s] %(message)s
""")
    return RunningServer(ini, tmp_path, port).start()


def burst(server, requests=40):
    """Requests at once to a server with one thread: most of them wait in waitress's queue."""
    def one(_):
        with urllib.request.urlopen(server.url + "/__heartbeat__", timeout=60) as answer:
            return answer.status

    with concurrent.futures.ThreadPoolExecutor(requests) as pool:
        assert set(pool.map(one, range(requests))) == {200}


def warnings(server):
    return [line for line in server.stderr().splitlines() if WARNING in line]


@pytest.fixture
def servers():
    started = []
    yield started
    for server in started:
        server.stop()


def test_every_queued_request_warns_without_the_interval(tmp_path, servers):
    servers.append(server := serve(tmp_path, queue_warning_seconds=0))
    burst(server)
    burst(server)
    assert len(warnings(server)) > 5  # waitress's own behaviour: one per queued request


def test_one_warning_per_interval_saying_how_many_were_held_back(tmp_path, servers):
    servers.append(server := serve(tmp_path, queue_warning_seconds=1))
    burst(server)
    burst(server)
    assert len(warnings(server)) == 1
    time.sleep(1.2)
    burst(server)
    lines = warnings(server)
    assert len(lines) == 2
    assert "more since the last one logged" in lines[1]
    held = int(lines[1].split("(")[1].split()[0])
    assert held > 5


def _allowed_cpus(pid):
    """Each thread's ``Cpus_allowed_list`` of process ``pid``."""
    lists = []
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        for line in status.read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                lists.append(line.split(":", 1)[1].strip())
    return lists


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux only")
def test_cpu_affinity_keeps_every_thread_of_the_server_on_those_cpus(tmp_path, servers):
    (tmp_path / "pinned").mkdir()
    servers.append(server := serve(tmp_path / "pinned", cpu_affinity=0))
    burst(server)  # every thread has run requests
    threads = _allowed_cpus(server.process.pid)
    assert len(threads) >= 2  # the main thread and waitress's worker
    assert set(threads) == {"0"}
    # Without the option the server runs where it was started: where this test runs.
    (tmp_path / "free").mkdir()
    servers.append(other := serve(tmp_path / "free"))
    burst(other)
    assert set(_allowed_cpus(other.process.pid)) == set(_allowed_cpus(os.getpid()))


def test_a_bad_cpu_affinity_is_one_sentence():
    from syncserver.serving import waitress_server

    with pytest.raises(SystemExit, match="cpu_affinity must be CPU numbers and ranges"):
        waitress_server({}, host="127.0.0.1", port="0", cpu_affinity="first")
    with pytest.raises(SystemExit, match="cpu_affinity names CPUs this process may not use"):
        waitress_server({}, host="127.0.0.1", port="0", cpu_affinity="0-100000")
