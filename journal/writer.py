"""Who is writing: ``host:pid:nonce:thread``, and the writer's count of its records.

The nonce tells apart two processes that got the same pid on one host at different times; it
is drawn anew in a forked child. The count is per thread and shared by every storage in it, so
a writer's records appear in every log in increasing ``rid`` order.
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


_thread = threading.local()


def writer_id() -> str:
    """This process and thread, as written in the ``writer`` field of records."""
    return f"{_process}:{threading.get_native_id()}"


def next_rid() -> tuple[str, int]:
    """The writer id and the next ``rid`` for a record this thread is about to write."""
    writer = writer_id()
    if getattr(_thread, "writer", None) != writer:  # a new thread, or a forked child
        _thread.writer, _thread.count = writer, 0
    _thread.count += 1
    return writer, _thread.count
