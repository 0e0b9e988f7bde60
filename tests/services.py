"""Real servers the tests start themselves, on free loopback ports, and can stop at will.

Fault tests need a server they may stop and restart without disturbing the
machine's shared one; every other test uses them too, so state never leaks
between helpers or runs.
"""

import shutil
import socket
import subprocess
import time


def free_port():
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port, timeout=15.0, process=None):
    """Wait until something accepts connections on ``port``; False on timeout or exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class RedisServer:
    """A private ``redis-server`` on a free port; ``stop()``/``start()`` keep the port."""

    def __init__(self, directory):
        self.directory = directory
        self.port = free_port()
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def available():
        return shutil.which("redis-server") is not None

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
             "--save", "", "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_for_port(self.port, process=self.process):
            self.stop()
            raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self):
        """Kill the server (SIGKILL: a crash, not a clean shutdown)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None
