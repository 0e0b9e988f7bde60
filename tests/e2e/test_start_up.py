"""Starting ``paster serve`` as a newcomer does (issue 12, items 10-12).

A copy of the real development.ini in a temporary folder (so its
``%(here)s/var/`` is there, not in the checkout), started with a port on
the command line, on a port that is taken, on a database that does not
answer, and through an ini of one's own that has no logging sections.
"""

import shutil
import socket
import sqlite3
import subprocess

import pytest

from tests.e2e.conftest import (
    DEVELOPMENT_INI,
    PASTER,
    Client,
    RunningServer,
    free_port,
    register,
    require_installed,
)

pytestmark = pytest.mark.e2e


class CommandLineServer(RunningServer):
    """``paster serve <ini> <variables>``, e.g. ``port=5001``."""

    def __init__(self, ini, directory, port, *variables):
        super().__init__(ini, directory, port)
        self.variables = variables

    def start(self):
        require_installed()
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.process = subprocess.Popen(
                [str(PASTER), "serve", str(self.ini), *self.variables], cwd=self.directory,
                stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        return self._wait()

    def _wait(self):
        import time
        import urllib.request

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"paster serve exited with {self.process.returncode}:\n"
                            f"{self.stderr()}", pytrace=False)
            try:
                with urllib.request.urlopen(self.url + "/__heartbeat__", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        pytest.fail(f"no heartbeat on {self.url}:\n{self.stderr()}", pytrace=False)


def development_copy(directory):
    ini = directory / "development.ini"
    shutil.copy(DEVELOPMENT_INI, ini)
    return ini


def run_to_exit(ini, *variables, timeout=60):
    require_installed()
    try:
        return subprocess.run([str(PASTER), "serve", str(ini), *variables], cwd=ini.parent,
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"paster serve {ini} kept running")


def test_the_port_on_the_command_line_is_the_port_served(tmp_path):
    ini = development_copy(tmp_path)
    port = free_port()
    server = CommandLineServer(ini, tmp_path, port, f"port={port}").start()
    try:
        assert f"Serving on http://127.0.0.1:{port}" in server.stderr()
        register(server, "port")
        # Accounts and records in development.ini's own place, next to the copy.
        assert (tmp_path / "var" / "syncserver.db").is_file()
    finally:
        server.stop()


def test_a_taken_port_is_one_sentence_before_anything_starts(tmp_path):
    ini = development_copy(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        finished = run_to_exit(ini, f"port={port}")
    assert finished.returncode == 1, finished
    assert "Traceback" not in finished.stderr, finished.stderr
    lines = [line for line in finished.stderr.splitlines()
             if line.startswith("syncserver:")]
    assert len(lines) == 1, finished.stderr
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in lines[0]
    assert "port=" in lines[0]
    # It stopped before the application was built: no database was created.
    assert not (tmp_path / "var").exists()


def test_a_database_that_does_not_answer_names_its_setting_and_hides_the_password(tmp_path):
    development_copy(tmp_path)
    down = f"mysql+mysqldb://sync:topsecret@127.0.0.1:{free_port()}/sync"
    ini = tmp_path / "my.ini"
    ini.write_text(f"[app:main]\nuse = config:{tmp_path / 'development.ini'}\n"
                   f"storage.sqluri = {down}\nstorage.connect_timeout = 2\n\n"
                   f"[server:main]\nuse = config:{tmp_path / 'development.ini'}\n"
                   f"port = {free_port()}\n")
    finished = run_to_exit(ini)
    assert finished.returncode == 1, finished
    assert "Traceback" not in finished.stderr, finished.stderr
    assert "topsecret" not in finished.stderr
    assert ("syncserver: cannot start: the database of storage.sqluri "
            f"({down.replace('topsecret', '***')}) is unavailable") in finished.stderr


def test_an_own_ini_without_logging_sections_still_logs_and_moves_the_accounts(tmp_path):
    development_copy(tmp_path)
    own = tmp_path / "elsewhere"
    own.mkdir()
    port = free_port()
    ini = own / "my.ini"
    ini.write_text(f"[app:main]\nuse = config:{tmp_path / 'development.ini'}\n"
                   "storage.sqluri = sqlite:///%(here)s/data/sync.db\n\n"
                   f"[server:main]\nuse = config:{tmp_path / 'development.ini'}\n")
    server = CommandLineServer(ini, own, port, f"port={port}").start()
    try:
        _, username, password = register(server, "own")
        client = Client(f"{server.url}/1.1/{username}/", username, password)
        assert client.put("storage/prefs/p", {"payload": "x"}).status == 200
        client.close()
    finally:
        server.stop()
    log = server.stderr()
    assert f"Serving on http://127.0.0.1:{port}" in log
    assert " INFO    [" in log  # development.ini's line format, WARNING no longer cut short
    # Accounts and records both moved with storage.sqluri; development.ini's var/ was never made.
    with sqlite3.connect(own / "data" / "sync.db") as database:
        assert database.execute("SELECT COUNT(*) FROM users WHERE username = ?",
                                (username,)).fetchone() == (1,)
        assert database.execute("SELECT COUNT(*) FROM items").fetchone() == (1,)
    assert not (tmp_path / "var").exists()
