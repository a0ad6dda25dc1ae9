"""optuna-journal: an event-sourced journal storage for Optuna.

Every mutation is a typed msgspec record appended to a log (a file, shared over NFS if need
be); each process replays the log into its own in-memory state and answers reads from it.
"""

from __future__ import annotations

import os

from optuna_journal.backends import Backend, FileBackend, MemoryBackend
from optuna_journal.errors import (
    CorruptLogError,
    JournalError,
    LockLostError,
    LockTimeoutError,
    NotAJournalError,
    SchemaVersionError,
    UnknownRecordError,
)
from optuna_journal.storage import JournalStorage

__all__ = [
    "Backend",
    "CorruptLogError",
    "FileBackend",
    "JournalError",
    "JournalStorage",
    "LockLostError",
    "LockTimeoutError",
    "MemoryBackend",
    "NotAJournalError",
    "SchemaVersionError",
    "UnknownRecordError",
    "open_storage",
]


def open_storage(location: str | os.PathLike[str]) -> JournalStorage:
    """Open the journal at ``location``: a file path, or ``memory:`` for a private in-memory log.

    Args:
        location: Where the log lives.

    Returns:
        A :class:`JournalStorage` ready to pass to ``optuna.create_study(storage=...)``.
    """
    if str(location) == "memory:":
        return JournalStorage(MemoryBackend())
    return JournalStorage(FileBackend(location))
