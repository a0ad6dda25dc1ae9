"""Where the bytes of a journal live. A backend knows nothing of Optuna or msgspec.

``RedisBackend`` needs the ``redis`` extra: ``pip install "optuna-journal[redis]"``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from optuna_journal.backends.base import Backend, Batch, Cursor
from optuna_journal.backends.file import FileBackend
from optuna_journal.backends.memory import MemoryBackend

if TYPE_CHECKING:
    from optuna_journal.backends.redis import RedisBackend

__all__ = [
    "Backend",
    "Batch",
    "Cursor",
    "FileBackend",
    "MemoryBackend",
    "RedisBackend",
    "open_backend",
]


def __getattr__(name: str) -> Any:
    if name == "RedisBackend":  # imported on first use: redis-py is an optional dependency
        from optuna_journal.backends.redis import RedisBackend

        return RedisBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_backend(location: str | os.PathLike[str]) -> Backend:
    """The log at ``location``, without replaying it.

    Args:
        location: A file path; a Redis URL (``redis://``, ``rediss://``, ``unix://``, or
            ``redis+sentinel://host:port[,host:port...]/SERVICE[/DB]`` for the primary that
            Redis Sentinel names, its sentinels' own password as ``&sentinel_password=PW``),
            with the journal's name as ``?journal=NAME`` (default ``default``) and, to
            acknowledge an append only once N replicas have it, ``&replicas=N``; or
            ``memory:`` for a private in-memory log.
    """
    text = str(location)
    if text == "memory:":
        return MemoryBackend()
    if text.startswith(("redis://", "rediss://", "unix://", "redis+sentinel://")):
        from optuna_journal.backends.redis import from_url

        return from_url(text)
    return FileBackend(location)
