"""A TCP proxy on loopback that can lose replies: it forwards a request to the server, lets
the server act on it, then drops the connection instead of passing the reply back."""

from __future__ import annotations

import random
import socket
import threading


class ReplyDroppingProxy:
    """Forward 127.0.0.1:``port`` to the server at ``target_port``.

    Args:
        target_port: The server's port on 127.0.0.1.
        marker: Requests containing these bytes are candidates for a lost reply.
        probability: The chance that a candidate's reply is lost.
    """

    def __init__(self, target_port: int, marker: bytes, probability: float, seed: int = 0) -> None:
        self.target_port = target_port
        self.marker = marker
        self.probability = probability
        self.dropped = 0
        self._rng = random.Random(seed)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
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
            while data := client.recv(65536):
                if self.marker in data and self._rng.random() < self.probability:
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
            while data := server.recv(65536):
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
