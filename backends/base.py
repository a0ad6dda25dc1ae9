"""The contract every backend keeps. A backend moves bytes; it knows nothing of Optuna.

A log is a sequence of opaque payloads. Record 0 is the head, written once by
:meth:`Backend.append_head`. Every reader sees the same payloads in the same order, and that
order decides every conflict during replay.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from typing import NamedTuple, Protocol, runtime_checkable


class Cursor(NamedTuple):
    """Where a reader stands in a log.

    Attributes:
        records: How many records lie before this point (the next record's number).
        token: The medium's own position there: a byte offset in a file, a stream id in Redis.
        log: Which log ``token`` is a position in, where the medium may swap in another (a
            file's device and inode: ``compact`` renames a new file over the old); ``None``
            where it never does, and in a snapshot (see :meth:`Backend.locate`).
    """

    records: int
    token: int | str
    log: Hashable | None = None


class Batch(NamedTuple):
    """Consecutive payloads read in one go, and the cursor just after the last of them."""

    cursor: Cursor
    payloads: list[bytes]


@runtime_checkable
class Backend(Protocol):
    """Where the bytes of one log live."""

    @property
    def location(self) -> str:
        """A path or URL naming this log, for messages and for reopening it elsewhere."""
        ...

    def append(
        self, payloads: Sequence[bytes], sync: bool = True, after: Cursor | None = None
    ) -> None:
        """Append payloads at the end of the log, in order; durable when this returns.

        With ``sync=False`` a medium that makes appends durable itself (the file backend on a
        local filesystem, by ``fsync``) may leave that to its next synced append: the payloads
        are in the log and every reader sees them, but an OS crash or power loss before then
        can lose them.

        ``after`` is how far the caller has read: the medium appends only to the log it read,
        and only while that log still holds what it read (``None``: the caller has not read).

        Raises:
            OSError: The medium failed; nothing was acknowledged.
            LogReplacedError: The log is another one than the caller read (compacted);
                nothing was appended. Read the new one, then append.
            LogTruncatedError: The log no longer holds what the caller read; nothing was
                appended.
        """
        ...

    def append_head(self, payload: bytes) -> None:
        """Write ``payload`` as record 0 unless the log already has one (atomic)."""
        ...

    def read(self, after: Cursor | None = None) -> Iterator[Batch]:
        """Yield every complete record after ``after`` (from the start if ``None``).

        Never yields a torn or corrupt record: an incomplete tail is left unread, corruption
        raises :class:`~optuna_journal.errors.CorruptLogError`.
        """
        ...

    def head(self) -> bytes | None:
        """Record 0, or ``None`` while the log has none; cheap, whatever the log's length."""
        ...

    def locate(self, cursor: Cursor) -> Cursor | None:
        """``cursor`` (a snapshot's position) as a position in the log as it is now, or
        ``None`` if the log does not reach it."""
        ...

    def save_snapshot(self, data: bytes) -> None:
        """Keep ``data`` as the log's snapshot, atomically replacing the previous one."""
        ...

    def load_snapshot(self) -> bytes | None:
        """The log's snapshot, or ``None``."""
        ...
