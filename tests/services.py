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
