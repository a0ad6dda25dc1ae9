"""A real Redis Cluster on loopback: three primaries, no replicas, for the cluster tests."""

from __future__ import annotations

from pathlib import Path
import random
import socket
import time

import redis

from optuna_journal.redis_server import RedisServer

_SLOTS = 16384


class RedisClusterNodes:
    """Three cluster-mode redis-servers, each holding a third of the slots."""

    def __init__(self, directory: Path) -> None:
        self.servers = [
            RedisServer(
                directory / f"node{i}",
                "always",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "5000",
                port=_port_with_its_bus_port_free(),
            )
            for i in range(3)
        ]

    def start(self) -> None:
        for server in self.servers:
            server.start()
        clients = self.clients()
        bounds = [0, _SLOTS // 3, 2 * _SLOTS // 3, _SLOTS]
        for client, low, high in zip(clients, bounds, bounds[1:], strict=False):
            client.execute_command("CLUSTER ADDSLOTS", *range(low, high))
        for server in self.servers[1:]:
            clients[0].execute_command("CLUSTER MEET", "127.0.0.1", server.port)
        deadline = time.monotonic() + 60
        while not all(self._ready(c) for c in clients):
            assert time.monotonic() < deadline, "the cluster did not form within 60 s"
            time.sleep(0.1)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def clients(self) -> list[redis.Redis]:
        return [redis.Redis(port=s.port) for s in self.servers]

    def owner(self, key: str) -> int:
        """The index of the node that holds ``key``'s slot."""
        client = self.clients()[0]
        slot = client.execute_command("CLUSTER KEYSLOT", key)
        ports = [s.port for s in self.servers]
        for low, high, primary, *_ in client.execute_command("CLUSTER SLOTS"):
            if low <= slot <= high:
                return ports.index(primary[1])
        raise AssertionError(f"no node holds slot {slot}")

    def move_slot(self, key: str, to: int) -> None:
        """Migrate ``key``'s slot, with its keys, to node ``to``, as a resharding does."""
        clients = self.clients()
        slot = clients[0].execute_command("CLUSTER KEYSLOT", key)
        source, target = clients[self.owner(key)], clients[to]
        source_id, target_id = (
            c.execute_command("CLUSTER MYID").decode() for c in (source, target)
        )
        target.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
        source.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
        while keys := source.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
            source.execute_command(
                "MIGRATE", "127.0.0.1", self.servers[to].port, "", 0, 5000, "KEYS", *keys
            )
        for client in clients:
            client.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)

    @staticmethod
    def _ready(client: redis.Redis) -> bool:
        info = client.execute_command("CLUSTER INFO")  # parsed by redis-py
        return bool(info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == 3)


def _port_with_its_bus_port_free() -> int:
    """A free loopback port whose cluster bus port (10,000 above it) is free too. Both lie
    below Linux's ephemeral ports (32768 up), so no connection is handed one meanwhile."""
    for _ in range(1000):
        port = random.randrange(20_000, 22_768)
        try:
            for p in (port, port + 10_000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")
