"""Deployment fixtures: the project under Apache + mod_wsgi and under gunicorn, for real.

Apache runs its WSGI daemon as ``www-data`` and refuses to run Python code
as root, so the daemon cannot use the test virtualenv when its Python lives
somewhere ``www-data`` cannot read (pyenv under ``/root``). It uses what a
Debian deployment uses instead: Debian's ``libapache2-mod-wsgi-py3`` with a
virtualenv of ``/usr/bin/python3`` (``.venv-apache``, made here when
missing; the project is installed editable, so it runs the code under test).
``scripts/test.sh`` installs the Debian packages.
"""

import fcntl
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import service_missing
from tests.services import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WSGI_SCRIPT = PROJECT_ROOT / "syncserver.wsgi"
PRODUCTION_INI = PROJECT_ROOT / "production.ini"
APACHE_VENV = PROJECT_ROOT / ".venv-apache"
APACHE_BINARY = "/usr/sbin/apache2"
APACHE_MODULES = Path("/usr/lib/apache2/modules")
APACHE_USER = "www-data"
SYSTEM_PYTHON = "/usr/bin/python3"
START_TIMEOUT = 30.0


def wait_for_heartbeat(url, process, describe_failure):
    """Poll ``url`` until it answers 200; fail with the server's log otherwise."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{describe_failure()}",
                        pytrace=False)
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{url} did not answer 200 within {START_TIMEOUT:.0f} s:\n{describe_failure()}",
                pytrace=False)


def stop_process(process):
    """SIGTERM (Apache and gunicorn stop their children on it), SIGKILL if it hangs."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def logging_sections(access_log_path):
    """Logging sections for a test ini: the access log to a file, everything else to stderr."""
    return f"""
[loggers]
keys = root, access

[handlers]
keys = console, access

[formatters]
keys = generic, message

[logger_root]
level = INFO
handlers = console

[logger_access]
level = INFO
handlers = access
qualname = syncserver.access
propagate = 0

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[handler_access]
class = FileHandler
args = ('{access_log_path}',)
level = NOTSET
formatter = message

[formatter_generic]
format = %(asctime)s %(levelname)-5.5s [%(name)s] %(message)s

[formatter_message]
format = %(message)s
"""


# --- Apache + mod_wsgi ----------------------------------------------------------------


#: What .venv-apache holds: the project with the extras production.ini needs under Apache.
APACHE_REQUIREMENT = f"{PROJECT_ROOT}[redis]"


def _apache_venv_is_current():
    marker = APACHE_VENV / ".installed"
    return (marker.exists() and marker.read_text() == APACHE_REQUIREMENT
            and marker.stat().st_mtime >= (PROJECT_ROOT / "pyproject.toml").stat().st_mtime)


@pytest.fixture(scope="session")
def apache_python_home():
    """``.venv-apache``: /usr/bin/python3's virtualenv with the project, readable by www-data."""
    for path, package in ((APACHE_BINARY, "apache2"),
                          (APACHE_MODULES / "mod_wsgi.so", "libapache2-mod-wsgi-py3"),
                          (SYSTEM_PYTHON, "python3")):
        if not Path(path).exists():
            service_missing("Apache + mod_wsgi", f"{path} is missing (apt-get install {package})")
    try:
        pwd.getpwnam(APACHE_USER)
    except KeyError:
        service_missing("Apache + mod_wsgi", f"there is no {APACHE_USER} user")
    # pytest-xdist workers may all get here at once: one builds, the others wait for it.
    with open(PROJECT_ROOT / ".venv-apache.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _apache_venv_is_current():
            try:
                subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--clear", str(APACHE_VENV)],
                               check=True, capture_output=True, timeout=120)
                subprocess.run([str(APACHE_VENV / "bin" / "pip"), "install", "-q", "-e",
                                APACHE_REQUIREMENT], check=True, capture_output=True,
                               timeout=600)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
                output = getattr(error, "stderr", b"") or b""
                service_missing("a virtualenv for mod_wsgi",
                                f"{error}: {output.decode(errors='replace')[-2000:]}")
            (APACHE_VENV / ".installed").write_text(APACHE_REQUIREMENT)
    probe = subprocess.run(
        ["runuser", "-u", APACHE_USER, "--", str(APACHE_VENV / "bin" / "python"), "-c",
         "import syncserver.app"], capture_output=True, timeout=60)
    if probe.returncode != 0:
        service_missing("a virtualenv www-data can read",
                        f"{APACHE_USER} cannot import syncserver from {APACHE_VENV} (the project "
                        f"folder must be readable by it): {probe.stderr.decode(errors='replace')}")
    return APACHE_VENV


class ApacheServer:
    """``apache2 -DFOREGROUND`` with a config of our own: mod_wsgi daemon mode, two mounts.

    The same ``syncserver.wsgi`` is mounted at ``/`` and at ``/sync``; the
    ini it loads is named by ``SYNCSERVER_INI`` in Apache's environment (as
    ``/etc/apache2/envvars`` would set it), and the shared secret the ini
    reads from ``${SYNCSERVER_SHARED_SECRET}`` comes the same way.
    """

    def __init__(self, directory, python_home, environment):
        self.directory = Path(directory)
        self.python_home = python_home
        self.environment = environment
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = self.directory / "httpd.conf"
        self.process = None

    def write_config(self):
        modules = "\n".join(
            f"LoadModule {name}_module {APACHE_MODULES / f'mod_{name}.so'}"
            for name in ("mpm_event", "authz_core", "wsgi"))
        self.config.write_text(f"""
ServerRoot "{self.directory}"
ServerName 127.0.0.1
Listen 127.0.0.1:{self.port}
PidFile "{self.directory}/httpd.pid"
DefaultRuntimeDir "{self.directory}"
ErrorLog "{self.directory}/error.log"
LogLevel warn
User {APACHE_USER}
Group {APACHE_USER}
{modules}

WSGISocketPrefix "{self.directory}/wsgi"
WSGIDaemonProcess syncserver processes=2 threads=4 display-name=%{{GROUP}} \\
    python-home={self.python_home} home={self.directory}
WSGIProcessGroup syncserver
WSGIApplicationGroup %{{GLOBAL}}
WSGIPassAuthorization On
WSGIScriptAlias /sync {WSGI_SCRIPT}
WSGIScriptAlias / {WSGI_SCRIPT}

<Directory "{PROJECT_ROOT}">
    <Files "syncserver.wsgi">
        Require all granted
    </Files>
</Directory>
""")

    def start(self):
        self.write_config()
        environment = dict(os.environ, **self.environment)
        with open(self.directory / "apache.stderr", "ab") as err:
            self.process = subprocess.Popen(
                [APACHE_BINARY, "-f", str(self.config), "-DFOREGROUND"],
                stdout=err, stderr=err, stdin=subprocess.DEVNULL, env=environment)
        wait_for_heartbeat(self.url + "/__heartbeat__", self.process, self.log)
        return self

    def stop(self):
        if self.process is not None:
            stop_process(self.process)

    def log(self):
        texts = []
        for name in ("apache.stderr", "error.log"):
            path = self.directory / name
            if path.exists():
                texts.append(f"--- {name}\n" + path.read_text(errors="replace")[-5000:])
        return "\n".join(texts)


@pytest.fixture(scope="module")
def apache(apache_python_home, redis_server):
    """Apache on a free loopback port: production.ini's setup (Redis in front of the
    database) on SQLite, served at / and /sync/."""
    # pytest's tmp_path is private to root; the daemon (www-data) must write the database.
    directory = Path(tempfile.mkdtemp(prefix="syncserver-apache-"))
    os.chmod(directory, 0o755)
    ini = directory / "syncserver.ini"
    access_log = directory / "access.log"
    ini.write_text(f"""[app:main]
use = config:{PRODUCTION_INI}
storage.sqluri = sqlite:///%(here)s/var/sync.db
auth.sqluri = sqlite:///%(here)s/var/sync.db
storage.redis_url = {redis_server.url}
""" + logging_sections(access_log))
    (directory / "var").mkdir()
    user = pwd.getpwnam(APACHE_USER)
    for path in (directory, directory / "var"):
        os.chown(path, user.pw_uid, user.pw_gid)
    server = ApacheServer(directory, apache_python_home, {
        "SYNCSERVER_INI": str(ini), "SYNCSERVER_SHARED_SECRET": "apache-test-secret",
        "SYNCSERVER_MASTER_SECRET": "apache-master-secret"})
    server.access_log = access_log
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


# --- gunicorn ---------------------------------------------------------------------------


GUNICORN = Path(sys.executable).parent / "gunicorn"


class GunicornServer:
    """``gunicorn --paste <ini> -b 127.0.0.1:<port> -w 2``."""

    def __init__(self, ini, directory):
        self.ini = Path(ini)
        self.directory = Path(directory)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self, environment):
        if not GUNICORN.exists():
            pytest.fail(f"gunicorn is not installed at {GUNICORN}: pip install -e '.[test]'",
                        pytrace=False)
        with open(self.directory / "gunicorn.stdout", "ab") as out, \
                open(self.directory / "gunicorn.stderr", "ab") as err:
            self.process = subprocess.Popen(
                [str(GUNICORN), "--paste", str(self.ini), "-b", f"127.0.0.1:{self.port}",
                 "-w", "2"], cwd=self.directory, stdout=out, stderr=err,
                stdin=subprocess.DEVNULL, env=dict(os.environ, **environment))
        wait_for_heartbeat(self.url + "/__heartbeat__", self.process, self.stderr)
        return self

    def stop(self):
        if self.process is not None:
            stop_process(self.process)

    def stdout(self):
        return (self.directory / "gunicorn.stdout").read_text(errors="replace")

    def stderr(self):
        return (self.directory / "gunicorn.stderr").read_text(errors="replace")[-5000:]
