"""Two server processes on one database: the setup every concurrency test runs against.

Each server is its own ``gunicorn --paste`` (one worker process, eight
threads) on its own port, built from the project's development.ini with the
database and the settings of one entry of :data:`SERVER_CONFIGS`. Clients
alternate between the two, so every race crosses process boundaries: nothing
in-process (a lock, a cache) can hide a missing database guarantee.

Both serve Storage API 1.5 too (development.ini enables it), with the same
master secret (:data:`MASTER_SECRET`, also ``Cluster.master_secret``): a
1.5 client mints one token per server, for the URL it reaches. Tests of 1.5
only pick their databases with ``@pytest.mark.parametrize("cluster",
SYNC15_CONFIGS, indirect=True)``.
"""

import dataclasses

import pytest

from tests.e2e.conftest import write_ini
from tests.services import GunicornServer


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """A database fixture (``mysql_url``...) and extra ``[app:main]`` keys.

    A value may name another fixture as ``{fixture_name}``; it is filled in
    with that fixture's value (a URL) when the servers start.
    """

    database: str
    settings: dict = dataclasses.field(default_factory=dict)


SERVER_CONFIGS = [
    pytest.param(ServerConfig("mysql_url"), id="mysql", marks=pytest.mark.mysql),
    pytest.param(ServerConfig("postgresql_url"), id="postgresql",
                 marks=pytest.mark.postgresql),
    pytest.param(ServerConfig("sqlite_url"), id="sqlite"),
    # production.ini's setup: MySQL with the Redis cache in front, shared by both processes.
    pytest.param(ServerConfig("mysql_url", {
        "storage.backend": "redis", "storage.wrapped_backend": "sql",
        "storage.redis_url": "{redis_url}"}), id="mysql+redis", marks=pytest.mark.mysql),
]

#: The databases the 1.5 races run on (SQLite serializes writers anyway).
SYNC15_CONFIGS = SERVER_CONFIGS[:2]

SERVER_COUNT = 2
#: Signs the Sync 1.5 tokens both servers accept.
MASTER_SECRET = "cluster-master-secret-0123456789"


@dataclasses.dataclass
class Cluster:
    """The running servers' base URLs, in a fixed order."""

    urls: list
    master_secret: str = MASTER_SECRET

    def url(self, n):
        """Server ``n`` modulo the number of servers: clients just count."""
        return self.urls[n % len(self.urls)]


@pytest.fixture(params=SERVER_CONFIGS)
def cluster(request, tmp_path):
    config = request.param
    sqluri = request.getfixturevalue(config.database)
    settings = {"storage.sqluri": sqluri, "auth.sqluri": sqluri,
                "global.master_secret": MASTER_SECRET}
    for key, value in config.settings.items():
        if value.startswith("{") and value.endswith("}"):
            value = request.getfixturevalue(value[1:-1])
        settings[key] = value
    # The ini is read by ConfigParser, which would take "%" in a URL for interpolation.
    settings = {key: str(value).replace("%", "%%") for key, value in settings.items()}
    servers = []
    try:
        for n in range(SERVER_COUNT):
            directory = tmp_path / f"server{n}"
            directory.mkdir()
            ini = write_ini(directory, 0, settings, sqluri=settings["storage.sqluri"])
            servers.append(GunicornServer(ini, directory, threads=8).start())
        yield Cluster([server.url for server in servers])
    finally:
        for server in servers:
            server.stop()
