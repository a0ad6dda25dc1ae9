"""optuna-journal: an event-sourced journal storage for Optuna.

Every mutation is a typed msgspec record appended to a log (a file, shared over NFS if need
be); each process replays the log into its own in-memory state and answers reads from it.
"""

from __future__ import annotations

import os

from optuna_journal.backends import Backend, FileBackend, MemoryBackend, open_backend
from optuna_journal.errors import (
    CorruptLogError,
    JournalConnectionError,
    JournalError,
    LockLostError,
    LockTimeoutError,
    LogTruncatedError,
    NotAJournalError,
    ReadOnlyError,
    SchemaVersionError,
    StaleViewError,
    UnknownRecordError,
)
from optuna_journal.storage import JournalStorage, JournalView

__all__ = [
    "Backend",
    "CorruptLogError",
    "FileBackend",
    "JournalConnectionError",
    "JournalError",
    "JournalStorage",
    "JournalView",
    "LockLostError",
    "LockTimeoutError",
    "LogTruncatedError",
    "MemoryBackend",
    "NotAJournalError",
    "ReadOnlyError",
    "SchemaVersionError",
    "StaleViewError",
    "UnknownRecordError",
    "open_backend",
    "open_storage",
]


def open_storage(location: str | os.PathLike[str]) -> JournalStorage:
    """Open the journal at ``location``.

    Args:
        location: As for :func:`open_backend`.

    Returns:
        A :class:`JournalStorage` ready to pass to ``optuna.create_study(storage=...)``.
    """
    return JournalStorage(open_backend(location))
