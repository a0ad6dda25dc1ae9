"""A TCP proxy on loopback that injects network faults between a client and a Redis server.

It can lose replies (forward a request, let the server act on it, then drop the connection
instead of passing the reply back), follow a failover to another server (as a managed Redis
endpoint does), and cut every connection as a network partition would.
"""

from __future__ import annotations

import random
import socket
import threading


class Proxy:
    """Forward 127.0.0.1:``port`` to the server at ``target_port``.

    Args:
        target_port: The server's port on 127.0.0.1; new connections go to its value then.
        marker: Requests containing these bytes are candidates for a lost reply.
        probability: The chance that a candidate's reply is lost.
    """

    def __init__(
        self, target_port: int, marker: bytes = b"", probability: float = 0.0, seed: int = 0
    ) -> None:
        self.target_port = target_port
        self.marker = marker
        self.probability = probability
        self.dropped = 0
        self.severed = False
        self._rng = random.Random(seed)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def sever(self) -> None:
        """From now on forward nothing: every connection drops at its next byte, and new
        ones are refused."""
        self.severed = True

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                if self.severed:
                    raise ConnectionRefusedError
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:  # the server is down, or cut off: so is this connection
                _close(client)
                continue
            for sock in (client, server):  # no Nagle delay on replies that come in pieces
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            drop = threading.Event()
            threading.Thread(
                target=self._upstream, args=(client, server, drop), daemon=True
            ).start()
            threading.Thread(
                target=self._downstream, args=(server, client, drop), daemon=True
            ).start()

    def _upstream(
        self, client: socket.socket, server: socket.socket, drop: threading.Event
    ) -> None:
        try:
            while (data := client.recv(65536)) and not self.severed:
                if self.marker and self.marker in data and self._rng.random() < self.probability:
                    drop.set()  # before the server can answer
                server.sendall(data)
        except OSError:
            pass
        finally:
            _close(server)

    def _downstream(
        self, server: socket.socket, client: socket.socket, drop: threading.Event
    ) -> None:
        try:
            while (data := server.recv(65536)) and not self.severed:
                if drop.is_set():
                    self.dropped += 1
                    break  # the server acted; the client never hears of it
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client)
            _close(server)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
