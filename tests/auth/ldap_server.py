"""A private OpenLDAP ``slapd`` for the tests, with a known directory.

The server runs as its own process on a free loopback port, from a
``slapd.conf`` in a temporary folder (mdb database, schemas core, cosine,
inetorgperson and nis), loaded with :data:`DIRECTORY` by ``slapadd`` before
it starts. Tests may stop it, restart it on the same port, or freeze it
(SIGSTOP) to play a directory that no longer answers.

With ``tls_files`` (certificate, key) it also offers StartTLS on its
``ldap://`` port and listens on a second port for ``ldaps://``.
"""

import base64
import hashlib
import os
import shutil
import signal
import subprocess
import textwrap
import time

from tests.services import free_port, wait_for_port

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA_DIR = "/etc/ldap/schema"
MODULE_DIR = "/usr/lib/ldap"

BASE_DN = "dc=example,dc=org"
PEOPLE_DN = f"ou=people,{BASE_DN}"
ADMIN_DN = f"cn=admin,{BASE_DN}"
ADMIN_PASSWORD = "admin secret"
SERVICE_DN = f"cn=sync-reader,ou=services,{BASE_DN}"
SERVICE_PASSWORD = "reader (secret) *"


class DirectoryUser:
    """One account of the test directory, with its clear-text password."""

    def __init__(self, uid, password, rdn=None, mail=None, uid_number=None, disabled=False,
                 common_name=None):
        self.uid = uid
        self.password = password
        self.rdn = rdn or f"uid={uid}"
        self.mail = mail
        self.uid_number = uid_number
        self.disabled = disabled
        self.common_name = common_name or uid

    @property
    def dn(self):
        return f"{self.rdn},{PEOPLE_DN}"


ALICE = DirectoryUser("alice", "alice-Passw0rd", mail="alice@example.org", uid_number=10001)
BOB_DISABLED = DirectoryUser("bob", "bob-Passw0rd", mail="bob@example.org", uid_number=10002,
                             disabled=True)
#: A DN and a password full of characters that mean something to LDAP or to HTTP.
CAROL_SPECIAL = DirectoryUser(
    "carol.o-neil", "p*)(uid=*)\\ wörd ☃:=,+\"<>;#",
    rdn="cn=O'Neil\\, Carol (Sales) *\\5C\\2B",
    common_name="O'Neil, Carol (Sales) *\\+",
    mail="carol@example.org", uid_number=10003)
#: Non-ASCII everywhere a value can hold it; no uidNumber.
ZOE_UNICODE = DirectoryUser("zoe", "pässwörd ☃ with spaces", common_name="Zoë Ünicode",
                            mail="zoe@example.org")

USERS = (ALICE, BOB_DISABLED, CAROL_SPECIAL, ZOE_UNICODE)

#: Filter that tells enabled accounts from disabled ones in this directory.
ENABLED_FILTER = "(!(employeeType=disabled))"


def ssha(password, salt=b"t3stS4lt"):
    digest = hashlib.sha1(password.encode("utf-8") + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode("ascii")


def _b64(value):
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


def directory_ldif():
    entries = [
        f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\n"
        "dc: example\no: Example\n",
        f"dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: ou=services,{BASE_DN}\nobjectClass: organizationalUnit\nou: services\n",
        f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\n"
        f"objectClass: simpleSecurityObject\ncn: sync-reader\n"
        f"userPassword:: {_b64(ssha(SERVICE_PASSWORD))}\n",
    ]
    for user in USERS:
        lines = [f"dn:: {_b64(user.dn)}", "objectClass: inetOrgPerson",
                 f"uid: {user.uid}", f"cn:: {_b64(user.common_name)}", f"sn:: {_b64(user.uid)}",
                 f"userPassword:: {_b64(ssha(user.password))}"]
        if user.mail:
            lines.append(f"mail: {user.mail}")
        if user.uid_number is not None:
            lines += ["objectClass: posixAccount", f"uidNumber: {user.uid_number}",
                      "gidNumber: 100", f"homeDirectory: /home/{user.uid}"]
        if user.disabled:
            lines.append("employeeType: disabled")
        entries.append("\n".join(lines) + "\n")
    return "\n".join(entries)


class SlapdServer:
    """``slapd`` on a free port; ``stop()``/``start()`` keep the port and the data."""

    def __init__(self, directory, tls_files=None):
        self.directory = str(directory)
        self.port = free_port()
        self.tls_files = tls_files
        self.tls_port = free_port() if tls_files else None
        self.process = None
        self.frozen = False
        self._config = os.path.join(self.directory, "slapd.conf")
        self._write_config()
        self._load_data()

    @staticmethod
    def available():
        return os.path.exists(SLAPD) and os.path.exists(SLAPADD)

    @property
    def uri(self):
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_uri(self):
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def ca_file(self):
        """The self-signed certificate: the CA file that makes clients trust this server."""
        return str(self.tls_files[0])

    def _write_config(self):
        database = os.path.join(self.directory, "db")
        os.makedirs(database, exist_ok=True)
        schemas = "\n".join(f"include {SCHEMA_DIR}/{name}.schema"
                            for name in ("core", "cosine", "inetorgperson", "nis"))
        tls = ""
        if self.tls_files:
            certificate, key = self.tls_files
            tls = f"TLSCertificateFile {certificate}\nTLSCertificateKeyFile {key}\n"
        with open(self._config, "w") as config:
            config.write(schemas + "\n" + tls + textwrap.dedent(f"""\
                pidfile {self.directory}/slapd.pid
                modulepath {MODULE_DIR}
                moduleload back_mdb
                loglevel none

                database mdb
                maxsize 16777216
                suffix "{BASE_DN}"
                rootdn "{ADMIN_DN}"
                rootpw "{ssha(ADMIN_PASSWORD)}"
                directory {database}
                index uid,mail eq

                access to attrs=userPassword
                    by anonymous auth
                    by self write
                    by * none
                access to *
                    by * read
                """))

    def _load_data(self):
        ldif = os.path.join(self.directory, "directory.ldif")
        with open(ldif, "w", encoding="utf-8") as handle:
            handle.write(directory_ldif())
        subprocess.run([SLAPADD, "-f", self._config, "-l", ldif], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self):
        listeners = self.uri + "/"
        if self.tls_files:
            listeners += " " + self.ldaps_uri + "/"
        self.process = subprocess.Popen(
            [SLAPD, "-f", self._config, "-h", listeners, "-d", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for port in filter(None, (self.port, self.tls_port)):
            if not wait_for_port(port, process=self.process):
                self.stop()
                raise RuntimeError(f"slapd did not start on port {port}")

    def stop(self):
        """Kill the server (SIGKILL: a crash; mdb keeps what was committed)."""
        if self.process is not None:
            self.thaw()
            self.process.kill()
            self.process.wait()
            self.process = None

    def freeze(self):
        """SIGSTOP: connections are accepted by the kernel but nothing answers.

        Returns once every thread of slapd is stopped: the signal is only
        sent by ``kill``, and a busy thread could still answer a request
        sent right after it (seen once under the parallel suite).
        """
        self.process.send_signal(signal.SIGSTOP)
        self.frozen = True
        deadline = time.monotonic() + 10
        while not _all_threads_stopped(self.process.pid):
            if time.monotonic() > deadline:
                raise RuntimeError("slapd did not stop after SIGSTOP")
            time.sleep(0.005)

    def thaw(self):
        if self.frozen and self.process is not None:
            self.process.send_signal(signal.SIGCONT)
        self.frozen = False

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def remove(self):
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def directory_settings(uri, sqluri, **overrides):
    """``[app:main]`` keys of LDAP auth on the test directory at ``uri`` (read-only mode).

    A key given as ``None`` in ``overrides`` is left out.
    """
    settings = {
        "auth.backend": "ldap",
        "auth.ldapuri": uri,
        "auth.bind_dn": SERVICE_DN,
        "auth.bind_password": SERVICE_PASSWORD,
        "auth.users_base_dn": PEOPLE_DN,
        "auth.enabled_filter": ENABLED_FILTER,
        "auth.ldap_timeout": "2",
        "auth.sqluri": sqluri,
        "auth.create_tables": "true",
    }
    settings.update(overrides)
    return {key: value for key, value in settings.items() if value is not None}


def _all_threads_stopped(pid):
    """True when every thread of ``pid`` is in the stopped state (Linux /proc)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as stat:
                state = stat.read().rpartition(")")[2].split()[0]
        except FileNotFoundError:
            continue  # a thread that just ended
        if state not in ("T", "t"):
            return False
    return True
