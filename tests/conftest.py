from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
import time

import pytest
import redis

from optuna_journal.redis_server import RedisServer
from tests.proxy import Proxy


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server shared by the tests of a session; each test uses journals of its own."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


def start_replica(replica: RedisServer, primary_port: int, password: str | None = None) -> None:
    """Start ``replica`` as a replica of the server at ``primary_port`` (both asking for
    ``password``, if given); return once it is in sync with it."""
    auth = ("--requirepass", password, "--masterauth", password) if password else ()
    replica.extra = (*auth, "--replicaof", "127.0.0.1", str(primary_port))
    replica.start()
    client = redis.Redis(port=replica.port, password=password)
    deadline = time.monotonic() + 20
    while client.info("replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, "the replica did not sync with its primary"
        time.sleep(0.02)


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer, Proxy]]:
    """A primary, and its replica linked to it through a proxy (to cut the link)."""
    primary = RedisServer(tmp_path / "primary")
    primary.start()
    link = Proxy(primary.port)
    replica = RedisServer(tmp_path / "replica")
    start_replica(replica, link.port)
    yield primary, replica, link
    for server in (replica, primary):
        server.kill()  # a replica refuses SIGTERM while it writes the AOF of its first sync
    link.close()
