"""Every exception optuna-journal raises.

Each subclasses the builtin a caller would already catch: a corrupt log is a ``ValueError``,
a lock that cannot be had in time is a ``TimeoutError``. Optuna's own errors
(``KeyError``, ``DuplicatedStudyError``, ``UpdateFinishedTrialError``) are raised as they are.
This module imports nothing from Optuna or msgspec, so backends can use it.
"""

from __future__ import annotations


class JournalError(Exception):
    """Base class of the errors specific to optuna-journal."""


class CorruptLogError(JournalError, ValueError):
    """A frame in the middle of a log fails its checks.

    Args:
        location: The log's path or URL.
        offset: Byte offset of the bad frame (``None`` where the medium has no offsets).
        record: Number of the record that cannot be read (0 is the log's header).
        reason: What is wrong with it.
        hint: What the user can do.
    """

    def __init__(
        self,
        location: str,
        offset: int | None,
        record: int,
        reason: str,
        hint: str = "inspect the log (`optuna-journal verify`) before writing to it again",
    ) -> None:
        self.location = location
        self.offset = offset
        self.record = record
        self.reason = reason
        self.hint = hint
        where = f"record {record}" if offset is None else f"byte offset {offset} (record {record})"
        super().__init__(f"{location}: corrupt log at {where}: {reason}; {hint}")


class NotAJournalError(JournalError, ValueError):
    """The file exists but is not an optuna-journal log; it is never overwritten."""


class SchemaVersionError(JournalError, ValueError):
    """The log was written by a schema this version does not understand."""


class UnknownRecordError(JournalError, ValueError):
    """A record kind this version does not know (written by a newer optuna-journal)."""


class LockTimeoutError(JournalError, TimeoutError):
    """The append lock could not be taken within the bounded wait."""


class LockLostError(JournalError, RuntimeError):
    """The append lock was taken over while this process held it; nothing was written."""


class StaleViewError(JournalError, TimeoutError):
    """This host's view of a log on a shared filesystem stayed behind the end the last
    writer left, longer than the lock's timeout; nothing was written."""


class JournalConnectionError(JournalError, ConnectionError):
    """The server holding the log cannot be reached within the bounded wait."""


class ReadOnlyError(JournalError, PermissionError):
    """A write to a view of the past (:meth:`JournalStorage.at`)."""


class LogReplacedError(JournalError):
    """The log was replaced (by ``compact``) since this process last read it; read it anew."""


class LogTruncatedError(JournalError):
    """The log no longer holds records this process has read: it was cut (``repair
    --force``), put back from an older copy, or lost by a Redis server. Nothing was appended;
    open the journal again to go on from what it holds."""


class ArtifactCorruptError(JournalError, ValueError):
    """An artifact's bytes do not match the size and SHA-256 recorded when it was written."""
