"""An exclusive lock for a log on a local filesystem: ``flock`` on a lock file kept in place.

Local filesystems honour ``flock`` across processes, and the kernel releases it when its
holder dies, so there is never a stale lock to take over; taking and releasing it costs two
system calls, where the lease lock of :mod:`optuna_journal.backends.lock` creates and deletes
a file. It is not used on network filesystems (NFS, SMB, ...), where ``flock`` may be emulated,
local to one client, or unreliable.

Waits poll with ``LOCK_NB``, so they are bounded by ``timeout`` like the lease lock's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import contextlib
import fcntl
import os
import threading

from optuna_journal.backends.lock import Handoff, Wait, no_permission


class FlockLock:
    """``flock`` on ``path``, which is created once and never deleted.

    Args:
        path: The lock file's path (the log's path + ``.flock``).
        timeout: Seconds a waiter waits in all before raising :class:`LockTimeoutError`.
    """

    lease = 0.0  # nothing to refresh: the kernel knows whether the holder lives

    def __init__(self, path: str, timeout: float = 120.0) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout=}")
        self.path = path
        self.timeout = timeout
        self._mutex = threading.Lock()  # one holder per process at a time
        self._fd: int | None = None
        self._pid = 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[Handoff]:
        """Hold the lock for the body of a ``with`` block. It carries no end of the log: on a
        local filesystem every process's view of the file is the file."""
        with self._mutex:
            fd = self._open()
            self._acquire(fd)
            try:
                yield Handoff(None)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def verify(self) -> None:
        """A held ``flock`` cannot be taken over: nothing to check."""

    def owner(self) -> str:
        return "another process on this host"

    def _open(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked child opens its own
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except PermissionError as err:
                raise no_permission(self.path, err) from err
            self._pid = os.getpid()
        return self._fd

    def _acquire(self, fd: int) -> None:
        wait = Wait(self.path, self.timeout, self.owner)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                wait.pause("it has been appending for that long")

    # os.close is bound at definition: at interpreter exit, modules may be torn down first.
    def __del__(self, _close: Callable[[int], None] = os.close) -> None:
        if self._fd is not None:
            try:
                _close(self._fd)
            except OSError:
                pass
