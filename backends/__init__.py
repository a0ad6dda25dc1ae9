"""Where the bytes of a journal live. A backend knows nothing of Optuna or msgspec.

``RedisBackend`` needs the ``redis`` extra: ``pip install "optuna-journal[redis]"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from optuna_journal.backends.base import Backend, Batch, Cursor
from optuna_journal.backends.file import FileBackend
from optuna_journal.backends.memory import MemoryBackend

if TYPE_CHECKING:
    from optuna_journal.backends.redis import RedisBackend

__all__ = ["Backend", "Batch", "Cursor", "FileBackend", "MemoryBackend", "RedisBackend"]


def __getattr__(name: str) -> Any:
    if name == "RedisBackend":  # imported on first use: redis-py is an optional dependency
        from optuna_journal.backends.redis import RedisBackend

        return RedisBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
