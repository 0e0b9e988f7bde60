#!/usr/bin/env bash
# Run the whole test suite: installs what it needs, starts the databases that are down.
#
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -k quota   # extra arguments go to pytest
#
# Uses ./.venv (created if missing). MariaDB and PostgreSQL are expected on
# 127.0.0.1 (3306 root without password, 5432 trust); when they are not
# running they are started, and installed from Debian's packages if absent
# (needs root). In CI (CI=true) a test whose service is missing fails.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test.sh] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq || true; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done; return 1; }

# --- Python environment -------------------------------------------------------
if ! pkg-config --exists mysqlclient 2>/dev/null && ! pkg-config --exists libmariadb 2>/dev/null; then
  log "installing MySQL client headers (for mysqlclient)"
  apt_install default-libmysqlclient-dev pkg-config build-essential || log "could not install MySQL headers"
fi
if [ ! -e /usr/include/ldap.h ] || [ ! -e /usr/include/sasl/sasl.h ]; then
  log "installing LDAP/SASL headers (for python-ldap)"
  apt_install libldap2-dev libsasl2-dev pkg-config build-essential || log "could not install LDAP headers"
fi
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import syncserver, webtest, hypothesis, MySQLdb, psycopg, redis, sphinx, ldap, jinja2, aiosmtpd, selenium, gunicorn, prometheus_client, xdist, jwt, tokenlib, hawkauthlib" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
  log "installing syncserver[test] into .venv"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[test]'
  touch .venv/.installed
fi

# --- Services -----------------------------------------------------------------
if ! port_open 3306; then
  if ! command -v mariadbd >/dev/null && [ ! -x /usr/sbin/mariadbd ]; then
    log "installing MariaDB"; apt_install mariadb-server || true
  fi
  log "starting MariaDB"
  as_root mkdir -p /run/mysqld && as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
  as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql --bind-address=127.0.0.1 || true
  wait_port 3306 || log "MariaDB did not come up"
fi
if ! port_open 5432; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "installing PostgreSQL"; apt_install postgresql || true
  fi
  log "starting PostgreSQL"
  for version in $(ls /etc/postgresql 2>/dev/null); do
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
  wait_port 5432 || log "PostgreSQL did not come up"
fi

# Fault tests start a private mariadbd (which they kill and freeze) beside the shared one.
if ! command -v mariadb-install-db >/dev/null || { ! command -v mariadbd >/dev/null && [ ! -x /usr/sbin/mariadbd ]; }; then
  log "installing MariaDB server programs (private test server)"; apt_install mariadb-server || true
fi

# Redis: the tests start their own redis-server on a free port; they need the program.
if ! command -v redis-server >/dev/null; then
  log "installing Redis"; apt_install redis-server || true
fi

# LDAP: the tests start their own slapd (from a slapd.conf in a temporary folder).
if [ ! -x /usr/sbin/slapd ] || [ ! -x /usr/sbin/slapadd ]; then
  log "installing OpenLDAP slapd"; apt_install slapd ldap-utils || true
  # Debian's package may start a system slapd; the tests never use it.
fi

# Self-signed certificates for the TLS tests (slapd with ldaps://, SMTP STARTTLS).
if ! command -v openssl >/dev/null; then
  log "installing openssl"; apt_install openssl || true
fi

# Password-reset pages: checked in a real headless Chromium (Debian's, never a download).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  log "installing Chromium and its WebDriver"; apt_install chromium chromium-driver || true
fi

# Apache + mod_wsgi for tests/deploy: Debian's module runs /usr/bin/python3, so the
# tests make a virtualenv of it (.venv-apache) that the www-data daemon can read.
if [ ! -x /usr/sbin/apache2 ] || [ ! -e /usr/lib/apache2/modules/mod_wsgi.so ] \
   || ! /usr/bin/python3 -c "import venv, ensurepip" 2>/dev/null; then
  log "installing Apache, mod_wsgi and python3-venv"
  apt_install apache2 libapache2-mod-wsgi-py3 python3-venv || log "could not install Apache"
fi

# --- Tests --------------------------------------------------------------------
set +e
# Two workers by default (PYTEST_WORKERS=0 runs in one process); a test file stays on
# one worker, so its module-scoped servers start once.
workers=${PYTEST_WORKERS:-2}
if [ "$workers" = 0 ]; then
  .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
else
  .venv/bin/python -m pytest -q -p no:cacheprovider -n "$workers" --dist loadfile "$@"
fi
status=$?
set -e
if [ "$status" = 5 ]; then log "pytest collected no tests"; fi
exit "$status"
