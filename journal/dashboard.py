"""``optuna-journal dashboard``: optuna-dashboard over a journal, live.

optuna-dashboard's own command cannot open our journals (it takes any existing file for an
Optuna journal), so this one hands it our storage. Every request reads the storage, which
catches up with the log first: trials that running workers append show up without a restart
(after optuna-dashboard's own cache of a study's trials, 2 to 10 s, expires).
"""

from __future__ import annotations

import errno
import socketserver
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna

from optuna_journal.storage import JournalStorage

_logger = optuna.logging.get_logger(__name__)

MISSING = (
    "optuna-journal dashboard needs optuna-dashboard, which is not installed: "
    "pip install 'optuna-journal[dashboard]'"
)


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per request, so a slow page does not hold up the rest (the storage is
    thread-safe)."""

    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    """Requests logged at debug level through Optuna's logger, not printed one per line."""

    def log_message(self, format: str, *args: Any) -> None:
        _logger.debug(f"{self.address_string()} {format % args}")


def serve(storage: JournalStorage, host: str, port: int, artifact_store: Any = None) -> None:
    """Serve optuna-dashboard for ``storage`` on ``host:port`` until interrupted.

    Raises:
        ImportError: optuna-dashboard is not installed (the message says how to install it).
        OSError: The port is taken or cannot be bound (the message says which).
    """
    try:
        import optuna_dashboard
    except ImportError as err:
        raise ImportError(MISSING) from err
    app = optuna_dashboard.wsgi(storage, artifact_store=artifact_store)
    try:
        server = make_server(host, port, app, server_class=_Server, handler_class=_Quiet)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise OSError(
                err.errno,
                f"port {port} on {host} is taken by another server; pick another with --port",
            ) from None
        raise OSError(err.errno, f"cannot listen on {host}:{port}: {err.strerror}") from None
    with server:
        url_host = f"[{host}]" if ":" in host else host
        print(
            f"optuna-dashboard for {storage.backend.location} at "
            f"http://{url_host}:{server.server_port}/dashboard/ (Ctrl-C to stop)",
            flush=True,
        )
        server.serve_forever()
