"""Real servers the tests start themselves, on free loopback ports, and can stop at will.

Fault tests need a server they may stop and restart without disturbing the
machine's shared one; every other test uses them too, so state never leaks
between helpers or runs.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


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


class SMTPServer:
    """A real SMTP server (aiosmtpd) on a free port that keeps every message it receives.

    ``tls_files`` = (certificate, key) offers STARTTLS and requires it before
    anything is sent; ``logins`` = {user: password} requires AUTH LOGIN/PLAIN.
    """

    def __init__(self, tls_files=None, logins=None):
        self.port = free_port()
        self.tls_files = tls_files
        self.logins = logins
        self.messages = []
        self.accepted_logins = []
        self._controller = None

    def start(self):
        import ssl

        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        server = self

        class Handler:
            async def handle_DATA(self, smtp, session, envelope):
                server.messages.append(envelope)
                return "250 Message accepted"

        def authenticator(smtp, session, envelope, mechanism, auth_data):
            login = getattr(auth_data, "login", b"").decode()
            password = getattr(auth_data, "password", b"").decode()
            if server.logins and server.logins.get(login) == password:
                server.accepted_logins.append(login)
                return AuthResult(success=True)
            return AuthResult(success=False, handled=False)

        options = {}
        if self.tls_files:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.tls_files)
            options.update(tls_context=context, require_starttls=True)
        if self.logins is not None:
            options.update(authenticator=authenticator, auth_required=True,
                           auth_require_tls=bool(self.tls_files))
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **options)
        self._controller.start()
        return self

    def stop(self):
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def mails(self):
        """The received messages, parsed (``email.message.EmailMessage``)."""
        import email
        import email.policy

        return [email.message_from_bytes(envelope.original_content, policy=email.policy.default)
                for envelope in self.messages]


def self_signed_certificate(directory, host="127.0.0.1"):
    """Write a self-signed certificate and key for ``host`` (IP address) with openssl."""
    certificate, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN={host}", "-addext", f"subjectAltName=IP:{host}",
         "-keyout", str(key), "-out", str(certificate)],
        check=True, capture_output=True)
    return certificate, key


class MariaDBServer:
    """A private ``mariadbd`` on a free port that fault tests may kill, freeze and restart.

    The data folder and port survive :meth:`kill` and :meth:`start`, so a
    restarted server has every committed row and answers the same URL, as
    a production database coming back would. Root has no password and is
    reached over TCP (``mysql_url``); InnoDB is sized small so that a fresh
    server is up in about a second.
    """

    #: Small and durable: fsync on every commit, as a production server should.
    SERVER_OPTIONS = (
        "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M",
        "--innodb-data-file-path=ibdata1:12M:autoextend", "--innodb-undo-tablespaces=0",
        "--innodb-flush-log-at-trx-commit=1", "--skip-log-bin", "--skip-name-resolve",
        "--max-connections=300", "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_bin",
    )

    def __init__(self, directory):
        self.directory = Path(directory)
        self.datadir = self.directory / "data"
        self.port = free_port()
        self.process = None

    @property
    def url(self):
        """SQLAlchemy URL of the server (no database selected)."""
        return f"mysql+mysqldb://root@127.0.0.1:{self.port}/"

    @staticmethod
    def available():
        return all(_program(name) for name in ("mariadbd", "mariadb-install-db"))

    def install(self):
        """Create the system tables (once per data folder)."""
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [_program("mariadb-install-db"), "--no-defaults", f"--datadir={self.datadir}",
             "--auth-root-authentication-method=normal", "--skip-test-db", "--user=root",
             *self.SERVER_OPTIONS],
            capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {result.stderr[-2000:]}")

    def start(self, timeout=60.0):
        if not (self.datadir / "mysql").is_dir():
            self.install()
        log = open(self.directory / "mariadbd.log", "ab")  # noqa: SIM115 (kept by Popen)
        self.process = subprocess.Popen(
            [_program("mariadbd"), "--no-defaults", f"--datadir={self.datadir}",
             f"--socket={self.directory / 'mariadbd.sock'}", f"--port={self.port}",
             "--bind-address=127.0.0.1", "--user=root",
             f"--pid-file={self.directory / 'mariadbd.pid'}", *self.SERVER_OPTIONS],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        if not wait_for_port(self.port, timeout=timeout, process=self.process):
            self.kill()
            raise RuntimeError(f"mariadbd did not start on port {self.port}; see "
                               f"{self.directory / 'mariadbd.log'}")

    def kill(self):
        """SIGKILL: a crash, as when the machine or the container dies."""
        if self.process is not None:
            if self.process.poll() is None:
                os.kill(self.process.pid, signal.SIGCONT)  # a frozen server must die too
                self.process.kill()
            self.process.wait()
            self.process = None

    stop = kill

    def pause(self):
        """SIGSTOP: the port still accepts TCP connections but nothing answers."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.process.pid, signal.SIGCONT)

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None


def _program(name):
    """``name`` on PATH or in /usr/sbin (not on a normal user's PATH)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


class GunicornServer:
    """``gunicorn --paste <ini>``: a master and its worker processes, on a free port.

    The master replaces a worker that dies, as in production, so a test can
    SIGKILL a worker in the middle of a request and then talk to its
    successor on the same port.
    """

    def __init__(self, ini, directory, workers=1, threads=8):
        self.ini = Path(ini)
        self.directory = Path(directory)
        self.workers = workers
        self.threads = threads
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None

    @staticmethod
    def program():
        candidate = Path(sys.executable).parent / "gunicorn"
        return str(candidate) if candidate.exists() else shutil.which("gunicorn")

    def start(self, timeout=30.0):
        log = open(self.directory / "gunicorn.log", "ab")  # noqa: SIM115 (kept by Popen)
        self.process = subprocess.Popen(
            [self.program(), "--paste", str(self.ini), "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(self.workers), "--worker-class", "gthread",
             "--threads", str(self.threads), "--timeout", "120", "--graceful-timeout", "2",
             # Idle keep-alive connections stay open longer than any test client idles
             # (the default, 2 s, closes them under a client that is about to reuse them).
             "--keep-alive", "75",
             *self._no_control_socket()],
            cwd=self.directory, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        if not (wait_for_port(self.port, timeout=timeout, process=self.process)
                and self._wait_for_heartbeat(timeout)):
            self.stop()
            raise RuntimeError(f"gunicorn did not start: {self.log()[-3000:]}")
        return self

    def _wait_for_heartbeat(self, timeout):
        """The port is the master's; the app answers once a worker has loaded it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(self.url + "/__heartbeat__", timeout=5) as answer:
                    if answer.status == 200:
                        return True
            except OSError:
                time.sleep(0.1)
        return False

    def _no_control_socket(self):
        """gunicorn >= 23 opens a control socket at one shared path by default: not ours."""
        import gunicorn

        major = int(gunicorn.__version__.split(".")[0])
        return ["--no-control-socket"] if major >= 23 else []

    def worker_pids(self):
        """The master's live children (its workers)."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    def log(self):
        return (self.directory / "gunicorn.log").read_text(errors="replace")

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
