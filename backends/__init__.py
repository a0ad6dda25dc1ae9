"""Where the bytes of a journal live. A backend knows nothing of Optuna or msgspec."""

from optuna_journal.backends.base import Backend, Batch, Cursor
from optuna_journal.backends.file import FileBackend
from optuna_journal.backends.memory import MemoryBackend

__all__ = ["Backend", "Batch", "Cursor", "FileBackend", "MemoryBackend"]
