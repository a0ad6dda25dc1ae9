"""An exclusive lock that works across hosts on a shared filesystem, NFS included.

``fcntl`` locks are unreliable on NFS, so the lock is a file created with
``O_CREAT | O_EXCL`` (atomic on NFSv3+ and on local filesystems). It holds the owner's host,
pid, start time, lease and a random token. While held, a background thread touches its mtime
every ``lease / 3`` seconds.

A waiter never compares clocks across hosts: it watches the lock file's (inode, mtime, size)
and, if that has not changed for ``lease`` seconds of its own monotonic clock, the holder is
dead or stalled and the lock is taken over: renamed aside (only one waiter's rename can
succeed on the file it watched), checked to be the same file, then deleted. A holder checks
its token is still on the lock just before it writes, so a holder that was stalled past its
lease and lost the lock fails with :class:`LockLostError` instead of writing.

Every wait is bounded by ``timeout`` and logs, every few seconds, whom it waits for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import contextlib
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
import weakref

from optuna_journal.errors import LockLostError, LockTimeoutError

_logger = logging.getLogger("optuna.journal.backends.lock")

_LOG_EVERY = 5.0
_MAX_POLL = 0.005


class LeaseLock:
    """A lock file with a refreshed lease.

    Args:
        path: The lock file's path (the log's path + ``.lock``).
        lease: Seconds without a refresh after which a waiter takes the lock over.
        timeout: Seconds a waiter waits in all before raising :class:`LockTimeoutError`.
    """

    def __init__(self, path: str, lease: float = 10.0, timeout: float = 120.0) -> None:
        if lease <= 0 or timeout <= 0:
            raise ValueError(f"lease and timeout must be positive, got {lease=} and {timeout=}")
        self.path = path
        self.lease = lease
        self.timeout = timeout
        self._token: bytes | None = None
        self._fd: int | None = None
        self._mutex = threading.Lock()  # one holder per process at a time
        self._fd_lock = threading.Lock()  # the refresher never touches a closed descriptor
        self._refresher: threading.Thread | None = None

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for the body of a ``with`` block."""
        with self._mutex:
            self._acquire()
            try:
                yield
            finally:
                self._release()

    def verify(self) -> None:
        """Raise :class:`LockLostError` unless this process still holds the lock."""
        try:
            with open(self.path, "rb") as f:
                current = f.read()
        except FileNotFoundError:
            current = b""
        if self._token is None or current != self._token:
            raise LockLostError(
                f"{self.path}: the lock was taken over while this process held it "
                f"(stalled longer than the {self.lease} s lease?); nothing was written"
            )

    def owner(self) -> str:
        """Describe the current holder, for messages."""
        try:
            with open(self.path, "rb") as f:
                info = json.loads(f.read() or b"{}")
        except (OSError, ValueError):
            return "an unknown holder"
        if not info:
            return "a holder still writing its name"
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
        return f"host {info.get('host')} pid {info.get('pid')} since {started}"

    def _acquire(self) -> None:
        token = json.dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "since": time.time(),
                "lease": self.lease,
                "token": uuid.uuid4().hex,
            }
        ).encode()
        wait = Wait(self.path, self.timeout, self.owner)
        watched: tuple[int, int, int] | None = None
        watched_since = time.monotonic()
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pass
            except PermissionError as err:
                raise no_permission(self.path, err) from err
            else:
                try:
                    os.write(fd, token)
                except BaseException:
                    os.close(fd)
                    os.unlink(self.path)
                    raise
                self._fd, self._token = fd, token
                self._start_refresher()
                return
            now = time.monotonic()
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                continue  # released between our create and our stat: try again at once
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)
            if seen != watched:
                watched, watched_since = seen, now
            elif now - watched_since >= self.lease:
                self._take_over(seen, now - watched_since)
                continue
            wait.pause(
                "its lease is being refreshed. If that process is gone, a filesystem whose "
                "mtime does not change on touch is the likely cause; remove the lock file by hand"
            )

    def _take_over(self, seen: tuple[int, int, int], idle: float) -> None:
        owner = self.owner()
        aside = f"{self.path}.stale.{uuid.uuid4().hex}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # another waiter took it over first
        st = os.stat(aside)
        if (st.st_ino, st.st_mtime_ns, st.st_size) != seen:
            # We moved a lock that someone took a moment ago: put it back unless yet another
            # lock exists already (its holder then fails its verify() and writes nothing).
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
            os.unlink(aside)
            return
        os.unlink(aside)
        _logger.warning(
            "Took over the stale lock %s of %s: not refreshed for %.1f s (lease %.1f s).",
            self.path,
            owner,
            idle,
            self.lease,
        )

    def _release(self) -> None:
        with self._fd_lock:
            fd, token = self._fd, self._token
            self._fd = self._token = None
            if fd is not None:
                os.close(fd)
        try:
            with open(self.path, "rb") as f:
                ours = f.read() == token
        except FileNotFoundError:
            ours = False
        if ours:
            os.unlink(self.path)
        else:
            _logger.warning("The lock %s was taken over while this process held it.", self.path)

    def _start_refresher(self) -> None:
        if self._refresher is None or not self._refresher.is_alive():
            self._refresher = threading.Thread(
                target=_refresh,
                args=(weakref.ref(self), self.lease / 3),
                name=f"optuna-journal lease {self.path}",
                daemon=True,
            )
            self._refresher.start()


class Wait:
    """A bounded wait with growing pauses, which says every few seconds whom it waits for.

    Args:
        path: The lock file waited for.
        timeout: Seconds in all before :meth:`pause` raises :class:`LockTimeoutError`.
        owner: Describes the holder, for messages.
    """

    def __init__(self, path: str, timeout: float, owner: Callable[[], str]) -> None:
        self.path, self.timeout, self.owner = path, timeout, owner
        self.start = time.monotonic()
        self.next_log = self.start + _LOG_EVERY
        self.delay = 0.0001

    def pause(self, why_held: str) -> None:
        """Sleep a little longer each time; raise once the time is up."""
        now = time.monotonic()
        if now - self.start >= self.timeout:
            raise LockTimeoutError(
                f"{self.path}: could not take the append lock in {self.timeout:.0f} s; it is "
                f"held by {self.owner()}: {why_held}"
            )
        if now >= self.next_log:
            _logger.info(
                "Waiting %.0f s so far for the lock %s, held by %s.",
                now - self.start,
                self.path,
                self.owner(),
            )
            self.next_log = now + _LOG_EVERY
        time.sleep(self.delay * (0.5 + random.random()))
        self.delay = min(self.delay * 2, _MAX_POLL)


def no_permission(path: str, err: PermissionError) -> PermissionError:
    return PermissionError(
        err.errno,
        f"{path}: no permission to create the append lock; every writer needs write "
        "permission on the journal's directory",
    )


def _refresh(ref: weakref.ref[LeaseLock], every: float) -> None:
    """Touch the lock file while it is held; end when the lock object is gone."""
    while True:
        time.sleep(every)
        lock = ref()
        if lock is None:
            return
        with lock._fd_lock:
            if lock._fd is not None:
                with contextlib.suppress(OSError):
                    os.utime(lock._fd)
        del lock
