"""Who is writing: ``host:pid:nonce:thread``, stamped on every record for audit.

The nonce tells apart two processes that got the same pid on one host at different times;
it is drawn anew in a forked child.
"""

from __future__ import annotations

import os
import socket
import threading


def _process_part() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


_process = _process_part()


def _after_fork() -> None:
    global _process
    _process = _process_part()


os.register_at_fork(after_in_child=_after_fork)


def writer_id() -> str:
    """This process and thread, as written in the ``writer`` field of records."""
    return f"{_process}:{threading.get_native_id()}"
