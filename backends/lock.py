"""An exclusive lock that works across hosts on a shared filesystem, NFS included, and
carries the log's committed end from one holder to the next.

The lock is a directory (the log's path + ``.lock``) that always holds exactly one entry, an
empty directory whose name is the lock's state::

    free+<end>+<tail>+<nonce>                              nobody holds it
    held+<end>+<tail>+<lease>+<pid>+<since>+<nonce>+<host>  <host>'s <pid> holds it

Every change of state is one ``rename`` of that entry inside the lock directory: atomic on
the server (NFS, SMB, SFTP, local disks), so of two clients renaming one name only one
succeeds, and the directory never holds two entries or none. Nothing is ever created or
deleted per append, and nothing is ever opened: a client that unlinks a file some process
still has open renames it aside instead (NFS's ``.nfsXXXX``, FUSE's ``.fuse_hidden*``), and
a lock file created and removed on every append left such files behind by the hundred.

``<end>`` and ``<tail>`` are the log's size and the crc32 of its last bytes as the holder
that released the lock left them (``-`` while unknown). A new holder learns them from the very
name it renamed, so they are the server's truth, not a client's cached view: the file
backend does not write until its own view of the log reaches that end with those bytes.

While held, a background thread touches the entry's mtime every ``lease / 3`` seconds, by
a path that holds the holder's nonce (so it never touches a lock another process took over).
A waiter never compares clocks across hosts: it watches the entry's (name, mtime) as the
server has them (:func:`~optuna_journal.backends.fresh.fresh_stat`) and, once they have not
changed for ``lease`` seconds of its own monotonic clock, the holder is dead or stalled and
the lock is taken over by renaming the entry to the waiter's own. A waiter on the holder's
own machine need not wait: ``<host>`` carries a digest of the machine's boot id and pid
namespace, so a waiter that shares both sees at once that the holder's pid is gone (or a
zombie) and takes the lock over. A holder touches its
entry just before it writes (a touch that fails if the entry was renamed), so a holder that
was stalled past its lease and lost the lock fails with :class:`LockLostError` instead of
writing. On a filesystem that
keeps mtimes to the second (SFTP), the lease must be at least 3 s.

Every wait is bounded by ``timeout`` and logs, every few seconds, whom it waits for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import contextlib
import hashlib
import logging
import os
import random
import re
import socket
import threading
import time
from typing import NamedTuple
import uuid
import weakref

from optuna_journal.backends.fresh import fresh_stat
from optuna_journal.errors import LockLostError, LockTimeoutError

_logger = logging.getLogger("optuna.journal.backends.lock")

_LOG_EVERY = 5.0
_MAX_POLL = 0.005
_LOOK_AGAIN = 0.25  # seconds one held entry is watched before the lock is listed afresh


class End(NamedTuple):
    """Where a holder left the log.

    Attributes:
        size: The log's size in bytes (the end of its last frame).
        tail: The crc32 of its last :data:`TAIL` bytes (all of them if it is shorter).
    """

    size: int
    tail: int


TAIL = 32
"""Bytes at the end of the log that :class:`End` vouches for: less than any frame."""


class Handoff:
    """What the lock carries from one holder to the next.

    Attributes:
        found: The end the last holder left, or ``None`` where the lock does not know it
            (a new lock, or a lock that never carries it: ``flock``).
        leave: The end this holder leaves for the next; the holder sets it when it changes
            the log.
        taken_over: Whether the last holder died (or stalled) holding the lock, so that what
            it was writing beside the log is left half-made.
    """

    def __init__(self, found: End | None, taken_over: bool = False) -> None:
        self.found = found
        self.leave = found
        self.taken_over = taken_over


class _Entry(NamedTuple):
    """The lock directory's one entry, parsed."""

    name: str
    free: bool
    end: End | None
    owner: str  # for messages
    pid: int = 0  # the holder's, where held
    host: str = ""


class LeaseLock:
    """A lock directory with a refreshed lease.

    Args:
        path: The lock directory's path (the log's path + ``.lock``); created when first
            needed.
        lease: Seconds without a refresh after which a waiter takes the lock over.
        timeout: Seconds a waiter waits in all before raising :class:`LockTimeoutError`.
    """

    def __init__(self, path: str, lease: float = 10.0, timeout: float = 120.0) -> None:
        if lease <= 0 or timeout <= 0:
            raise ValueError(f"lease and timeout must be positive, got {lease=} and {timeout=}")
        self.path = path
        self.lease = lease
        self.timeout = timeout
        self._held: str | None = None  # our entry's name while we hold the lock
        self._mutex = threading.Lock()  # one holder per process at a time
        self._held_lock = threading.Lock()  # the refresher never touches a released entry
        self._refresher: threading.Thread | None = None

    @contextlib.contextmanager
    def hold(self) -> Iterator[Handoff]:
        """Hold the lock for the body of a ``with`` block; release it with ``leave``."""
        with self._mutex:
            handoff = self._acquire()
            try:
                yield handoff
            finally:
                self._release(handoff.leave)

    def verify(self) -> None:
        """Raise :class:`LockLostError` unless this process still holds the lock.

        It touches the entry, as the refresher does, rather than asking whether it exists: a
        change of attributes goes to the server, while a client may answer even a request for
        fresh attributes from its cache (sshfs's ``dir_cache``). There a holder stalled past
        its lease still saw its entry after a waiter had taken the lock over, and wrote over
        the new holder's frames. The touch also renews the lease: a waiter renaming the entry
        after it sees the new mtime and gives the lock back.
        """
        name = self._held
        if name is not None:
            with contextlib.suppress(FileNotFoundError):
                os.utime(os.path.join(self.path, name))
                return
        raise LockLostError(
            f"{self.path}: the lock was taken over while this process held it "
            f"(stalled longer than the {self.lease} s lease?); nothing was written"
        )

    def owner(self) -> str:
        """Describe the current holder, for messages."""
        try:
            names = os.listdir(self.path)
        except OSError:
            return "an unknown holder"
        entry = _parse(names[0]) if len(names) == 1 else None
        return entry.owner if entry is not None else "an unknown holder"

    def _acquire(self) -> Handoff:
        nonce = uuid.uuid4().hex[:16]
        wait = Wait(self.path, self.timeout, self.owner)
        watched: tuple[str, int] | None = None
        watched_since = time.monotonic()
        looked = watched_since  # when this client last listed the lock afresh
        while True:
            entry = self._entry(wait)
            if entry is None:
                continue
            mine = _held_name(entry.end, self.lease, nonce)
            if entry.free:
                if self._move(entry.name, mine):
                    return self._taken(mine, Handoff(entry.end))
                self._forget_listing()  # it was taken since, or this client's listing is old
                wait.pause("another process took it first")
                continue
            try:
                seen = (entry.name, fresh_stat(os.path.join(self.path, entry.name)).mtime_ns)
            except FileNotFoundError:  # released or taken since the listing: look again
                self._forget_listing()
                continue
            now = time.monotonic()
            if seen != watched:
                watched, watched_since, looked = seen, now, now
            elif now - looked >= _LOOK_AGAIN:  # held longer than an append, or a stale view
                self._forget_listing()
                looked = now
            gone = entry.host == _HOST and bool(_MACHINE) and _gone(entry.pid)
            if gone or now - watched_since >= self.lease:
                if self._take_over(entry, seen[1], mine, now - watched_since, gone):
                    return self._taken(mine, Handoff(entry.end, taken_over=True))
                continue
            wait.pause(
                "its lease is being refreshed. If that process is gone, a filesystem whose "
                f"mtime does not change on touch is the likely cause; rename the entry in "
                f"{self.path} to free+-+-+0 by hand"
            )

    def _entry(self, wait: Wait) -> _Entry | None:
        """The lock's one entry; ``None`` after creating the lock or pausing for a listing
        caught mid-rename."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            self._create()
            return None
        except NotADirectoryError:
            raise NotADirectoryError(
                f"{self.path} is a file, not the lock directory this version of optuna-journal "
                "keeps (an older version's lock file?): stop every process writing this "
                "journal, then remove it"
            ) from None
        entry = _parse(names[0]) if len(names) == 1 else None
        if entry is None:  # a listing taken during a rename may show both names, or none
            self._forget_listing()  # and a client may serve it from its cache for seconds
            wait.pause(f"the lock directory holds {names}, where it should hold one entry")
        return entry

    def _forget_listing(self) -> None:
        """Make this client list the lock directory afresh next time.

        A client may serve a directory's listing from its cache (sshfs's ``dir_cache``, for
        ``dcache_timeout`` seconds): a waiter that sees only an entry renamed long ago gets
        one look at the lock per timeout, and under contention waited past a heartbeat's grace
        period (the soak on sshfs did). Touching the directory drops sshfs's cached listing of
        it; asking its server for its attributes makes an NFS client drop a listing whose
        directory changed since.
        """
        with contextlib.suppress(OSError):
            os.utime(self.path)
        with contextlib.suppress(OSError):
            fresh_stat(self.path)

    def _create(self) -> None:
        """Make the lock directory, free, whole: prepared aside, then renamed into place."""
        temp = f"{self.path}.new-{uuid.uuid4().hex}"
        first = os.path.join(temp, _free_name(None))
        try:
            os.mkdir(temp)
            os.mkdir(first)
        except PermissionError as err:
            raise no_permission(self.path, err) from err
        try:
            os.rename(temp, self.path)
        except OSError:
            if not os.path.isdir(self.path):
                raise
            os.rmdir(first)  # another process made it first
            os.rmdir(temp)

    def _take_over(self, entry: _Entry, mtime_ns: int, mine: str, idle: float, gone: bool) -> bool:
        if not self._move(entry.name, mine):
            return False  # its holder released it, or another waiter took it over first
        if fresh_stat(os.path.join(self.path, mine)).mtime_ns != mtime_ns:
            # Its holder touched it a moment ago: it is alive. Give the lock back (its holder
            # fails its next verify() if it checks meanwhile, and writes nothing).
            self._move(mine, entry.name)
            return False
        if gone:
            why = "that process has exited"
        else:
            why = f"not refreshed for {idle:.1f} s (lease {self.lease:.1f} s)"
        _logger.warning("Took over the stale lock %s of %s: %s.", self.path, entry.owner, why)
        return True

    def _taken(self, mine: str, handoff: Handoff) -> Handoff:
        self._held = mine
        self._start_refresher()
        return handoff

    def _release(self, leave: End | None) -> None:
        with self._held_lock:
            mine, self._held = self._held, None
        if mine is None or not self._move(mine, _free_name(leave)):
            _logger.warning("The lock %s was taken over while this process held it.", self.path)

    def _move(self, name: str, to: str) -> bool:
        """Rename entry ``name`` to ``to``; whether it was done."""
        try:
            os.rename(os.path.join(self.path, name), os.path.join(self.path, to))
            return True
        except FileNotFoundError:
            # Gone, or done: an NFS client that resends a rename whose reply was lost gets
            # "no such file" for the rename it did.
            return self._exists(to)
        except PermissionError as err:
            raise no_permission(self.path, err) from err

    def _exists(self, name: str) -> bool:
        try:
            fresh_stat(os.path.join(self.path, name))
            return True
        except FileNotFoundError:
            return False

    def _start_refresher(self) -> None:
        if self._refresher is None or not self._refresher.is_alive():
            self._refresher = threading.Thread(
                target=_refresh,
                args=(weakref.ref(self), self.lease / 3),
                name=f"optuna-journal lease {self.path}",
                daemon=True,
            )
            self._refresher.start()


def _machine() -> str:
    """A digest of this machine's boot and pid namespace: pids are comparable between two
    processes only where both agree (not across hosts, reboots or containers). Empty off
    Linux, where no pid is ever judged gone."""
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as f:
            boot = f.read().strip()
        namespace = os.stat("/proc/self/ns/pid")
    except OSError:
        return ""
    ident = b"%s %d %d" % (boot, namespace.st_dev, namespace.st_ino)
    return hashlib.blake2b(ident, digest_size=6).hexdigest()


_MACHINE = _machine()
_HOST = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) + (
    f"@{_MACHINE}" if _MACHINE else ""
)
"""The holder's host as the lock's entries name it: its name, ``@`` and :func:`_machine`."""


def _gone(pid: int) -> bool:
    """Whether process ``pid`` of this machine has exited (a zombie has: its locks are
    dead with it, and only its parent's ``wait`` remains)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return stat.rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")  # the state, after the name


def _free_name(end: End | None) -> str:
    return f"free+{_end_field(end)}+{uuid.uuid4().hex[:16]}"


def _held_name(end: End | None, lease: float, nonce: str) -> str:
    return f"held+{_end_field(end)}+{lease!r}+{os.getpid()}+{int(time.time())}+{nonce}+{_HOST}"


def _end_field(end: End | None) -> str:
    return "-+-" if end is None else f"{end.size}+{end.tail:08x}"


def _parse(name: str) -> _Entry | None:
    fields = name.split("+")
    try:
        end = None if fields[1] == "-" else End(int(fields[1]), int(fields[2], 16))
        if fields[0] == "free" and len(fields) == 4:
            return _Entry(name, True, end, "nobody")
        if fields[0] == "held" and len(fields) == 8:
            lease, pid, since, host = fields[3], fields[4], int(fields[5]), fields[7]
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
            owner = f"host {host} pid {pid} since {started} (lease {lease} s)"
            return _Entry(name, False, end, owner, int(pid), host)
    except (IndexError, ValueError):
        pass
    return None


class Wait:
    """A bounded wait with growing pauses, which says every few seconds whom it waits for.

    Args:
        path: The lock waited for.
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
        f"{path}: no permission to take the append lock; every writer needs write "
        "permission on the journal's directory",
    )


def _refresh(ref: weakref.ref[LeaseLock], every: float) -> None:
    """Touch the lock's entry while it is held; end when the lock object is gone."""
    while True:
        time.sleep(every)
        lock = ref()
        if lock is None:
            return
        with lock._held_lock:
            if lock._held is not None:
                with contextlib.suppress(OSError):  # taken over: the holder's verify() says so
                    os.utime(os.path.join(lock.path, lock._held))
        del lock
