"""Redis Sentinel on loopback: the same redis-server binary, run with ``--sentinel``."""

from __future__ import annotations

from pathlib import Path
import subprocess
import time

import redis

from optuna_journal.redis_server import _free_port, redis_server_binary

SERVICE = "journal-primary"


class SentinelServer:
    """One sentinel watching the primary at ``primary_port`` (quorum 1: it alone may fail
    over), quick to call it down (0.5 s). With ``password`` it asks its clients for one; with
    ``auth_pass`` it gives the primary and replicas theirs."""

    def __init__(
        self,
        directory: Path,
        primary_port: int,
        password: str | None = None,
        auth_pass: str | None = None,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = _free_port()
        self.password = password
        self.config = directory / "sentinel.conf"  # sentinels rewrite their own config
        self.config.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            f"dir {directory}\n"
            f"logfile {directory / 'sentinel.log'}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 500\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
            + (f"requirepass {password}\n" if password else "")
            + (f"sentinel auth-pass {SERVICE} {auth_pass}\n" if auth_pass else "")
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, replicas: int) -> None:
        """Start; return once the sentinel sees the primary and ``replicas`` replicas."""
        self.process = subprocess.Popen(
            [redis_server_binary(), str(self.config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = self._client()
        deadline = time.monotonic() + 30
        while True:
            try:
                if len(client.sentinel_slaves(SERVICE)) >= replicas:
                    return
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "sentinel.log").read_text(errors="replace")
                raise RuntimeError(f"the sentinel on port {self.port} did not start:\n{log}")
            time.sleep(0.05)

    def primary_port(self) -> int:
        """The port of the primary this sentinel names now."""
        _, port = self._client().sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def _client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, socket_connect_timeout=0.2)

    def url(self, journal: str, replicas: int) -> str:
        return (
            f"redis+sentinel://127.0.0.1:{self.port}/{SERVICE}/0"
            f"?journal={journal}&replicas={replicas}"
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
