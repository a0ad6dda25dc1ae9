"""A log in one file, shared by many processes on many hosts (local disk or NFS).

Layout: ``MAGIC`` then frames (see :mod:`optuna_journal.backends.frames`).

Atomicity: appends happen under a lock, never with ``O_APPEND`` (not atomic across NFS
clients): :class:`~optuna_journal.backends.lock.LeaseLock` on network filesystems, where
``flock`` and ``fcntl`` locks may exclude only the processes of one client, and
:class:`~optuna_journal.backends.flock.FlockLock` on local ones, where ``flock`` is reliable,
cheaper, and never goes stale (``lock="auto"`` reads the mount table). The writer finds the
true end of the valid frames, writes its frames there with ``pwrite``, cuts off anything after
them, and ``fsync`` s (see Durability). Readers take no lock: they read complete
frames from their last offset.

Shared filesystems: a client's cached view of the file (its size, its pages) may lag the
server's for seconds, and a writer that trusted it would write over other hosts' frames or
cut what merely looks like a torn tail. So on a network filesystem:

- every read and append opens the file afresh and asks the server for its size
  (:func:`~optuna_journal.backends.fresh.fresh_stat`), and drops this client's cached pages
  of the file, so that what it reads is the server's bytes (and reads a frame that fails its
  checks once more before calling it corrupt);
- the lease lock carries the end of the log each holder leaves (its size and a checksum of its
  last bytes) to the next, read from the very name the next holder took the lock by, so it is
  the server's truth. The new holder does not write until its own view reaches that end with
  those bytes (:class:`~optuna_journal.errors.StaleViewError` if it never does within the
  lock's timeout), so a filesystem whose client ignores the request for fresh attributes
  still never has frames overwritten: its writers wait for their caches instead;
- the lock creates, deletes and opens no file per append: unlinking a file that some process
  on the client still has open leaves it renamed aside (``.nfsXXXX``, ``.fuse_hidden*``).

Durability: an append is on stable storage when :meth:`FileBackend.append` returns, unless
it was made with ``sync=False`` on a local filesystem: then it reaches stable storage with the
next synced append to the log, by any process. On a local filesystem (``flock``) the sync
comes after the lock is released (group commit: processes appending meanwhile share one sync
instead of queueing behind it), and each synced append begins with a durability mark (see
:mod:`~optuna_journal.backends.frames`), so that a power loss that kept later frames but not
earlier ones leaves a log that opens; logs made before marks existed keep syncing under the
lock. On NFS the sync stays under the lock: it is what sends the frames to the server.

Snapshot: ``<log>.snapshot`` beside the log, replaced atomically under the lock (temp file
``<log>.snapshot.tmp``, fsync, rename, fsync of the directory).

Torn tail: a writer killed mid-append leaves an incomplete last frame. Readers do not see it;
the next writer overwrites it under the lock (and logs that it did), from a view that has
reached the end the lock says. A frame that fails its checks anywhere else raises
:class:`~optuna_journal.errors.CorruptLogError` with the byte offset and record number, unless
the log carries durability marks and no sound mark after the frame says it was durable: then
it and what follows are appends a power loss took before their sync, none acknowledged, and
are a torn tail too. A
writer that takes the lock over from a dead holder also removes the scratch file it may have
been writing (:attr:`FileBackend.scratch_paths`).

Shrinking: a file shorter than what a process has read (``repair --force`` cut it, or an
older copy was put back) stops that process's reads and appends with
:class:`~optuna_journal.errors.LogTruncatedError`: an append at the end it knew would leave
a hole of zeros in the log, unreadable to every process.

Replacement: ``compact`` swaps in a new file under the lock. A cursor names the file it is an
offset in (device and inode): a read after it, or an append by a caller that has read up to
it, raises :class:`~optuna_journal.errors.LogReplacedError` once the path names another file,
instead of reading at an offset of the old one or appending to a log the caller has not read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
import contextlib
import errno
import logging
import os
import time
from typing import Any, NamedTuple
import zlib

from optuna_journal.backends import frames
from optuna_journal.backends.base import Batch, Cursor
from optuna_journal.backends.flock import FlockLock
from optuna_journal.backends.fresh import fresh_stat
from optuna_journal.backends.lock import TAIL, End, Handoff, LeaseLock
from optuna_journal.errors import (
    CorruptLogError,
    LockLostError,
    LogReplacedError,
    LogTruncatedError,
    NotAJournalError,
    StaleViewError,
)

_logger = logging.getLogger("optuna.journal.backends.file")

_CHUNK = 1 << 17
"""Bytes read at a time. A chunk's frames are decoded and applied before the next is read;
128 KiB of them and their records stay in the CPU's caches and reuse the memory the last
chunk freed (a cold open of a long log measured 8% faster than with 4 MiB chunks)."""


class FileBackend:
    """A log file with lease-locked appends.

    Args:
        path: The log file. Created (with its magic, its mode from the umask) on first write
            if it does not exist. A symlink is resolved: the real file gets the records, and
            its lock and snapshot sit beside it.
        lock: ``"lease"`` (a lock file with a lease: for NFS and other network filesystems),
            ``"flock"`` (local filesystems only), or ``"auto"``: flock where the mount table
            says the filesystem is local, the lease lock everywhere else. Every process
            writing one log must use the same kind.
        lock_lease: Seconds after which a lock that is no longer refreshed is taken over.
        lock_timeout: Seconds an append waits for the lock before raising
            :class:`~optuna_journal.errors.LockTimeoutError`.

    Raises:
        FileNotFoundError: The file's directory does not exist.
        NotAJournalError: The file exists but is not an optuna-journal log.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        lock: str = "auto",
        lock_lease: float = 10.0,
        lock_timeout: float = 120.0,
    ) -> None:
        # A symlink is followed once, here: the lock, the snapshot and compact's rename then
        # belong to the real file, whichever name each process opened it by.
        self._path = os.path.realpath(os.fspath(path))
        directory = os.path.dirname(self._path)
        if not os.path.isdir(directory):
            raise FileNotFoundError(
                f"{self._path}: the directory {directory} does not exist; create it first"
            )
        self._local = not _on_network_filesystem(directory)
        if lock == "auto":
            lock = "flock" if self._local else "lease"
        self._lock: LeaseLock | FlockLock
        if lock == "lease":
            self._lock = LeaseLock(self._path + ".lock", lease=lock_lease, timeout=lock_timeout)
        elif lock == "flock":
            self._lock = FlockLock(self._path + ".flock", timeout=lock_timeout)
        else:
            raise ValueError(f"lock must be 'auto', 'lease' or 'flock', got {lock!r}")
        # The last frame boundary this process has checked (its log: the file's identity).
        self._end = Cursor(0, 0)
        # Local filesystems: the log kept open (by pid, for forked children), for reads and
        # for appends: {write: (pid, (device, inode), fd)}.
        self._kept: dict[bool, tuple[int, tuple[int, int], int]] = {}
        self._retired: list[int] = []  # kept descriptors of files since replaced
        # The frames the last append found and wrote, and the cursor they follow: the read
        # that follows an append (the storage reading its own record back) is served from it.
        self._recent: tuple[Cursor, list[Batch]] | None = None
        # The end of the log this process last synced, and in which file: what its marks say.
        self._durable: tuple[tuple[int, int] | None, int] = (None, 0)
        self._marked: dict[tuple[int, int], bool] = {}  # logs by identity: do they carry marks?
        # Group commit: sync after releasing the lock, where every process shares the page
        # cache (flock: a local filesystem). On NFS an fsync is what sends the frames to the
        # server: there it stays under the lock, before the next host reads the end.
        self._group = self._local and isinstance(self._lock, FlockLock)
        if os.path.exists(self._path):
            with open(self._path, "rb") as f:
                self._check_magic(f.fileno())

    @property
    def location(self) -> str:
        return self._path

    @property
    def lock(self) -> LeaseLock | FlockLock:
        return self._lock

    def __reduce__(self) -> tuple[Any, ...]:
        kind = "flock" if isinstance(self._lock, FlockLock) else "lease"
        return (FileBackend, (self._path, kind, self._lock.lease or 10.0, self._lock.timeout))

    def append(
        self, payloads: Sequence[bytes], sync: bool = True, after: Cursor | None = None
    ) -> None:
        """Append under the lock, and ``fsync`` (after releasing it on a local filesystem:
        see Durability in the module's docstring), unless ``sync`` is false and the
        filesystem is local (every process shares its page cache, so the next reader and
        writer see the frames anyway; on NFS only an ``fsync`` sends them to the server)."""
        with self._hold() as handoff:
            later = self._append_locked(
                payloads, handoff, only_if_empty=False, sync=sync or not self._local, after=after
            )
        if later is not None:
            self._sync_released(*later)

    def append_head(self, payload: bytes) -> None:
        with self._hold() as handoff:
            later = self._append_locked(
                [payload], handoff, only_if_empty=True, sync=True, after=None
            )
        if later is not None:
            self._sync_released(*later)

    def _sync_released(self, fd: int, identity: tuple[int, int], start: int, end: int) -> None:
        """Group commit: ``fsync`` after the lock is released, so that processes appending
        meanwhile share this sync or the next instead of queueing behind it. Their frames may
        then reach the disk before this process's; the mark before each synced append tells a
        reader after a power loss which gap may be cut (see
        :mod:`~optuna_journal.backends.frames`)."""
        try:
            os.fsync(fd)
        except OSError as err:
            raise OSError(
                err.errno,
                f"{self._path}: the append at byte offset {start} is in the log, but it could "
                f"not be synced to stable storage: {err.strerror}; a power loss may take it",
            ) from err
        self._note_durable(identity, end)

    def _note_durable(self, identity: tuple[int, int], end: int) -> None:
        if self._durable[0] != identity or self._durable[1] < end:
            self._durable = (identity, end)

    def read(self, after: Cursor | None = None) -> Iterator[Batch]:
        recent = self._recent
        if recent is not None and after == recent[0]:
            # What this process just appended, and the frames before it: all that the read
            # following an append (a writer finding its own verdict) needs, without opening
            # the file again. Frames appended since are read next time.
            yield from recent[1]
            return
        try:
            fd, identity, size, close = self._open(write=False)
        except FileNotFoundError:
            if after is not None and after.records > 0:
                raise self._deleted(after, "") from None
            return  # nothing written yet
        try:
            self._check_same_log(after, identity, "")
            if after is not None and size == after.token:
                return  # nothing new
            for batch in self._read(fd, after, size, log=identity):
                # Checked frames never change, so a writer can start its search for the end here.
                end = self._end
                if end.log != identity or batch.cursor.records > end.records:
                    self._end = batch.cursor
                yield batch
        finally:
            if close:
                os.close(fd)

    def _check_same_log(self, after: Cursor | None, identity: tuple[int, int], done: str) -> None:
        """Raise unless ``after`` is a position in the file now at the path (or in none)."""
        if after is not None and after.log is not None and after.log != identity:
            raise LogReplacedError(
                f"{self._path}: the log was replaced (compacted?) since this process read it"
                + done
            )

    def _deleted(self, after: Cursor, done: str) -> LogTruncatedError:
        return LogTruncatedError(
            f"{self._path}: the log was deleted while this process had read {after.records} "
            f"records of it{done}. Restore it, or open the journal again to start anew."
        )

    def _open(self, write: bool, create: bool = True) -> tuple[int, tuple[int, int], int, bool]:
        """The log open for reading or appending: ``(fd, (device, inode), size, close)``.

        On a local filesystem the descriptor is kept from call to call, and one ``stat`` of
        the path tells whether it still names the same file (``compact`` swaps in another)
        and how large it is. On NFS the file is opened afresh each time (close-to-open
        consistency), its size is asked of the server (:func:`fresh_stat`: a client's cached
        size hides other hosts' appends for seconds, and so do reads, which stop there), and
        the caller closes the descriptor.

        A writer checks its permission on every call, not only when it opens the file: a
        log made read-only under running processes stops them all.

        Raises:
            FileNotFoundError: Reading (or writing without ``create``), and the log does not
                exist.
            PermissionError: Writing, and the log or its directory is not writable.
        """
        flags = os.O_RDWR | (os.O_CREAT if create else 0) if write else os.O_RDONLY
        if not self._local:
            fd = os.open(self._path, flags, 0o666)  # the user's umask decides, as for open()
            try:
                fresh = fresh_stat(fd)
            except BaseException:
                os.close(fd)
                raise
            return fd, fresh.identity, fresh.size, True
        pid = os.getpid()
        kept = self._kept.get(write)
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            if not (write and create):
                raise
            st = None
        if st is not None and kept is not None and kept[:2] == (pid, (st.st_dev, st.st_ino)):
            if write and not os.access(self._path, os.W_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), self._path)
            return kept[2], kept[1], st.st_size, False
        if kept is not None and kept[0] == pid:
            # The file was replaced. Another thread may still be reading the old one through
            # this descriptor: it is closed with the backend, never under that reader.
            self._retired.append(kept[2])
        fd = os.open(self._path, flags, 0o666)  # the user's umask decides, as for open()
        info = os.fstat(fd)
        identity = (info.st_dev, info.st_ino)
        self._kept[write] = (pid, identity, fd)
        return fd, identity, info.st_size, False

    # The functions are bound at definition: at interpreter exit, modules may be torn down first.
    def __del__(
        self, _close: Callable[[int], None] = os.close, _getpid: Callable[[], int] = os.getpid
    ) -> None:
        mine = [fd for pid, _, fd in getattr(self, "_kept", {}).values() if pid == _getpid()]
        for fd in mine + getattr(self, "_retired", []):
            try:
                _close(fd)
            except OSError:
                pass

    def head(self) -> bytes | None:
        try:
            fd = os.open(self._path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            if not self._check_magic(fd):
                return None
            start = len(frames.MAGIC) + (frames.MARK_SIZE if _starts_with_mark(fd) else 0)
            header = os.pread(fd, frames.HEADER_SIZE, start)
            if len(header) < frames.HEADER_SIZE:
                return None
            # Never more than the file holds: a damaged length (0xFFFFFFFF) must not make
            # pread allocate gigabytes; a frame cut short by the file's end is what it is.
            available = os.fstat(fd).st_size - start - frames.HEADER_SIZE
            length = min(int.from_bytes(header[:4], "little"), max(0, available))
            parsed = frames.parse(header + os.pread(fd, length, start + frames.HEADER_SIZE))
            if parsed.error is not None:
                raise CorruptLogError(self._path, start, 0, parsed.error)
            return parsed.payloads[0] if parsed.payloads else None
        finally:
            os.close(fd)

    def locate(self, cursor: Cursor) -> Cursor | None:
        try:
            fresh = fresh_stat(self._path)
        except FileNotFoundError:
            return None
        if fresh.size < int(cursor.token):
            return None
        return cursor._replace(log=fresh.identity)

    @property
    def snapshot_path(self) -> str:
        return self._path + ".snapshot"

    def save_snapshot(self, data: bytes) -> None:
        """Under the append lock: the snapshot's scratch file has one name, for one writer."""
        try:
            with self._hold():
                self._save_snapshot_locked(data)
        except PermissionError as err:
            raise PermissionError(
                err.errno,
                f"{self.snapshot_path}: no permission to write a snapshot; it is written "
                "beside the journal, under its lock, which needs write permission on the "
                "journal's directory",
            ) from err

    def _save_snapshot_locked(self, data: bytes) -> None:
        # The log first: a snapshot must never be ahead of what a crash leaves of the log
        # (appends made with sync=False may not be on stable storage yet).
        with open(self._path, "rb") as log:
            os.fsync(log.fileno())
        # temp file -> fsync -> rename -> fsync the directory: a reader sees the old snapshot
        # or the new one, whole, and a crash at any point leaves one of them.
        temp = self.scratch_paths[0]
        with scratch_file(temp):
            with open(temp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            self._lock.verify()
            os.replace(temp, self.snapshot_path)
        _fsync_directory(os.path.dirname(self._path))

    def load_snapshot(self) -> bytes | None:
        try:
            with open(self.snapshot_path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def inspect(self) -> Inspection:
        """Walk every frame without raising, for ``verify`` and ``repair``."""
        with open(self._path, "rb") as f:
            fd = f.fileno()
            size = fresh_stat(fd).size
            end, records = (len(frames.MAGIC), 0) if self._check_magic(fd) else (0, 0)
            try:
                info = os.fstat(fd)
                log = (info.st_dev, info.st_ino)
                for batch in self._read(fd, None, size, strict=True, log=log):
                    records, end = batch.cursor.records, int(batch.cursor.token)
            except CorruptLogError as err:
                return Inspection(size, err.record, err.offset or 0, err.reason)
            return Inspection(size, records, end, None)

    def repair(self, backup: str, force: bool = False) -> Inspection:
        """Cut what follows the last sound frame, after copying it to ``backup``.

        Holds the append lock. Without ``force`` only a torn tail is cut; corruption in the
        middle is refused, since records after it would go too.

        Returns:
            What was found before the cut.

        Raises:
            CorruptLogError: Corruption in the middle, and ``force`` is not given.
        """
        with self.exclusive() as handoff:
            found = self.inspect()
            if found.error is not None and not force:
                raise CorruptLogError(
                    self._path,
                    found.end,
                    found.records,
                    found.error,
                    hint="records after it would be cut too; repair --force cuts them to a "
                    "backup file",
                )
            if found.end < found.size:
                with open(self._path, "r+b") as f:
                    f.seek(found.end)
                    with open(backup, "wb") as out:
                        out.write(f.read())
                        out.flush()
                        os.fsync(out.fileno())
                    self._lock.verify()
                    f.truncate(found.end)
                    f.flush()
                    os.fsync(f.fileno())
                self._end, self._recent = Cursor(0, 0), None
                handoff.leave = self.end()
            return found

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[Handoff]:
        """Hold the append lock, this process's view of the log caught up with the end the
        last holder left. A holder that changes the log other than by appending (``repair``,
        ``compact``) sets the yielded handoff's ``leave`` to :meth:`end` after it."""
        with self._hold() as handoff:
            if handoff.found is not None:
                fd = os.open(self._path, os.O_RDONLY)
                try:
                    self._reach(fd, handoff.found, fresh_stat(fd).size)
                finally:
                    os.close(fd)
            yield handoff

    @property
    def scratch_paths(self) -> tuple[str, str]:
        """Where a snapshot and a compacted log are written, under the lock, before they are
        renamed into place: one name each, so a holder killed while writing one leaves no
        more than that file, which the next writer replaces or, taking the lock over, removes."""
        return self.snapshot_path + ".tmp", self._path + ".compact.tmp"

    @contextlib.contextmanager
    def _hold(self) -> Iterator[Handoff]:
        with self._lock.hold() as handoff:
            if handoff.taken_over:
                for leftover in self.scratch_paths:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(leftover)
            yield handoff

    def end(self) -> End:
        """The log's end as the server has it now."""
        with open(self._path, "rb") as f:
            size = fresh_stat(f.fileno()).size
            return End(size, _crc_of_tail(f.fileno(), size))

    def _reach(self, fd: int, found: End, size: int) -> int:
        """Wait until this process's view of the log reaches ``found``, the end the last lock
        holder left, with the same last bytes; return the size the view then shows.

        Where a filesystem serves sizes and pages from a client's cache even when asked for
        the server's (see :mod:`~optuna_journal.backends.fresh`), a view may lag for seconds:
        writing at the end it shows would overwrite other hosts' frames, and cutting what
        looks like a torn tail there would cut frames it has not seen whole.

        Raises:
            StaleViewError: The view did not catch up within the lock's timeout.
        """
        start = time.monotonic()
        pause, next_log = 0.001, start + 5.0
        while size < found.size or _crc_of_tail(fd, found.size) != found.tail:
            now = time.monotonic()
            seen = "fewer bytes" if size < found.size else "other last bytes"
            if now - start >= self._lock.timeout:
                raise StaleViewError(
                    f"{self._path}: this host sees the log end at byte {size}, but the last "
                    f"writer left it at byte {found.size} ({seen} here), and after "
                    f"{self._lock.timeout:.0f} s its view has not caught up. Nothing was "
                    "written. If the log was removed, cut or replaced by hand, stop every process "
                    f"writing it and remove the lock directory {self._lock.path}."
                )
            if now >= next_log:
                _logger.info(
                    "%s: waiting %.0f s so far for this host's view of the log to reach byte "
                    "%d, where the last writer left it (it shows %s).",
                    self._path,
                    now - start,
                    found.size,
                    seen,
                )
                next_log = now + 5.0
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
            _forget(fd)
            size = fresh_stat(fd).size
        return size

    def _carries_marks(self, fd: int, identity: tuple[int, int]) -> bool:
        """Whether the log opted in to durability marks: logs made since marks exist start
        with one (older logs keep their writers syncing under the lock, and strict reads)."""
        known = self._marked.get(identity)
        if known is None:
            known = _starts_with_mark(fd)
            if known or os.fstat(fd).st_size >= len(frames.MAGIC) + frames.MARK_SIZE:
                self._marked[identity] = known  # settled once the first frame is whole
        return known

    def _append_locked(
        self,
        payloads: Sequence[bytes],
        handoff: Handoff,
        only_if_empty: bool,
        sync: bool,
        after: Cursor | None,
    ) -> tuple[int, tuple[int, int], int, int] | None:
        """Append; return what :meth:`_sync_released` is to sync after the lock is released
        (``(fd, identity, start, end)``), or ``None`` when that is done or not wanted."""
        data = b"".join(frames.pack(p) for p in payloads)
        read_some = after is not None and after.records > 0
        try:
            # A log this process has read is never created anew: that would fork the study.
            fd, identity, size, close = self._open(write=True, create=not read_some)
        except PermissionError as err:
            raise PermissionError(
                err.errno, f"{self._path}: no permission to write the journal"
            ) from err
        except FileNotFoundError:
            assert after is not None
            raise self._deleted(after, "; nothing was appended") from None
        try:
            self._check_same_log(after, identity, "; nothing was appended")
            if handoff.found is not None:
                size = self._reach(fd, handoff.found, size)
            start = self._end
            if start.log != identity:  # another file (new, or compacted): from its start
                start = Cursor(0, 0, identity)
            end, found = start, []
            if size != start.token or start.token == 0:
                for batch in self._read(fd, start, size, log=identity):
                    end = batch.cursor
                    found.append(batch)
            self._end = end
            if only_if_empty and end.records > 0:
                return None
            offset = int(end.token)
            if handoff.found is not None and offset < handoff.found.size:
                raise StaleViewError(
                    f"{self._path}: this host's view of the log has its last whole frame end at "
                    f"byte {offset}, before byte {handoff.found.size} where the last writer "
                    "left the log; nothing was written (writing there would overwrite frames "
                    "this host has not seen whole)"
                )
            if offset == 0:  # a new log: it carries marks, and syncs after the lock
                data = frames.MAGIC + frames.mark(0) + data
                marked = self._marked[identity] = True
            else:
                marked = self._carries_marks(fd, identity)
                if marked and sync:
                    # What this process knows to be durable. On NFS every append was synced
                    # before its writer released the lock: all before this one. An unsynced
                    # append carries none: its mark would say what its writer's next synced
                    # one will.
                    known = self._durable[1] if self._durable[0] == identity else 0
                    data = frames.mark(min(known, offset) if self._local else offset) + data
            if size > offset:
                _logger.warning(
                    "%s: cutting %d bytes at byte offset %d that are not whole frames, or that "
                    "no later mark shows were synced: a writer died mid-append, or a power loss "
                    "took appends before their sync. None of it was acknowledged.",
                    self._path,
                    size - offset,
                    offset,
                )
            later = sync and self._group and marked and not close
            self._lock.verify()
            try:
                _pwrite_all(fd, data, offset)
                if size > offset + len(data):
                    os.ftruncate(fd, offset + len(data))
                if sync and not later:  # also makes earlier frames durable, whoever wrote them
                    os.fsync(fd)
            except OSError as err:
                # A full disk or an I/O error: take back what was written, so the log stays as
                # it was (a partial frame would be an invisible torn tail anyway).
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, offset)
                raise OSError(
                    err.errno,
                    f"{self._path}: could not append {len(data)} bytes at byte offset {offset}: "
                    f"{err.strerror}; nothing was appended",
                ) from err
            if offset == 0:
                _fsync_directory(os.path.dirname(self._path))  # the new file's name is durable
            new_end = offset + len(data)
            tail = data[-TAIL:]
            missing = min(TAIL, new_end) - len(tail)
            if missing > 0:  # a short append: the bytes before it end the log too
                tail = os.pread(fd, missing, offset - missing) + tail
            handoff.leave = End(new_end, zlib.crc32(tail))
            written = Cursor(end.records + len(payloads), new_end, identity)
            self._end = written
            self._recent = (start, [*found, Batch(written, list(payloads))])
            if later:
                return fd, identity, offset, new_end
            if sync:
                self._note_durable(identity, new_end)
            return None
        finally:
            if close:
                os.close(fd)

    def _check_magic(self, fd: int) -> bool:
        """Return whether the file has its magic; raise if it is something else."""
        head = os.pread(fd, len(frames.MAGIC), 0)
        if head == frames.MAGIC:
            return True
        if frames.MAGIC.startswith(head):
            return False  # empty, or a creator died mid-magic: an empty log
        hint = ""
        if head.startswith(b"{"):
            hint = " It looks like Optuna's own JSON journal: use optuna.storages.JournalStorage."
        raise NotAJournalError(
            f"{self._path}: not an optuna-journal log (it starts with {head!r}); "
            f"refusing to read or overwrite it.{hint}"
        )

    def _read(
        self,
        fd: int,
        after: Cursor | None,
        size: int,
        strict: bool = False,
        log: tuple[int, int] | None = None,
    ) -> Iterator[Batch]:
        """Yield the sound frames after ``after`` in the file's first ``size`` bytes, in
        batches, their cursors in ``log``."""
        if not self._local:  # pages cached before the size last changed may be stale
            _forget(fd)
        if after is None or after.token == 0:
            if not self._check_magic(fd):
                return
            after = Cursor(0, len(frames.MAGIC))
        count, pos = after.records, int(after.token)
        if size < pos:  # a writer would leave a hole of zeros in the log, unreadable to all
            raise LogTruncatedError(
                f"{self._path}: the log is {size} bytes, shorter than the {pos} bytes ({count} "
                "records) this process has read: it was cut or replaced with an older copy "
                "while this process had it open. Nothing was appended; open the journal again "
                "to go on from what it holds."
            )
        want, rechecked = _CHUNK, False
        while pos < size:
            buf = os.pread(fd, min(want, size - pos), pos)
            parsed = frames.parse(buf, strict)
            pos += parsed.stop  # past marks too, which hold no payload
            if parsed.payloads:
                rechecked = False
                count += len(parsed.payloads)
                yield Batch(Cursor(count, pos, log), parsed.payloads)
            if parsed.error is not None:
                if not self._local and not rechecked:
                    # A client's cache may still hold a page from before another host wrote
                    # there: judge the server's bytes, not those.
                    rechecked = True
                    _forget(fd)
                    continue
                if self._zeros_to_end(fd, pos, size):
                    return  # a tail the filesystem zero-filled after a crash: torn
                if log is not None and self._unproven(fd, pos, size, log):
                    return  # appends a power loss took before their sync: torn
                raise CorruptLogError(self._path, pos, count, parsed.error)
            if parsed.need:
                if pos + parsed.need > size:
                    return  # an incomplete last frame: invisible until it is complete
                want = max(_CHUNK, parsed.need)
            elif not parsed.stop:
                return

    def _unproven(self, fd: int, pos: int, size: int, log: tuple[int, int]) -> bool:
        """Whether damage at ``pos`` may be appends lost to a power loss before their sync:
        the log carries marks, and no sound mark after ``pos`` says it was durable. A process
        acknowledges an append only after a sync that also made everything before it durable,
        so nothing after such damage was acknowledged, unless the disk damaged synced bytes
        that no later mark vouches for yet (the last appends before the crash)."""
        if not self._carries_marks(fd, log):
            return False
        overlap = frames.MARK_SIZE - 1
        at = pos + 1
        while at < size:
            chunk = os.pread(fd, min(_CHUNK, size - at), at)
            if any(durable > pos for _, durable in frames.marks(chunk)):
                return False
            if at + len(chunk) >= size:
                break
            at += len(chunk) - overlap
        return True

    def _zeros_to_end(self, fd: int, pos: int, size: int) -> bool:
        while pos < size:
            chunk = os.pread(fd, min(_CHUNK, size - pos), pos)
            if chunk.count(0) != len(chunk):
                return False
            pos += len(chunk)
        return True


def _starts_with_mark(fd: int) -> bool:
    """Whether a mark follows the magic: a log made since marks exist (the header after it)."""
    return frames.read_mark(os.pread(fd, frames.MARK_SIZE, len(frames.MAGIC))) is not None


class Inspection(NamedTuple):
    """What a walk over every frame of a log file found.

    Attributes:
        size: The file's size in bytes.
        records: Complete, sound frames, the header included.
        end: Byte offset just after the last sound frame.
        error: What is wrong with the frame at ``end``, if it is corrupt (not just torn).
    """

    size: int
    records: int
    end: int
    error: str | None

    @property
    def torn(self) -> int:
        """Bytes after the last sound frame that are an incomplete one (a crash mid-append),
        or appends a power loss took before their sync (no later mark vouches for them)."""
        return 0 if self.error else self.size - self.end


_NETWORK_FILESYSTEMS = (
    "nfs",
    "nfs4",
    "cifs",
    "smb",
    "smb3",
    "smbfs",
    "9p",
    "afs",
    "ceph",
    "glusterfs",
    "lustre",
    "gpfs",
    "beegfs",
    "fuse.sshfs",
    "virtiofs",
)


def _on_network_filesystem(directory: str, mountinfo: str = "/proc/self/mountinfo") -> bool:
    """Whether ``directory`` lies on a network filesystem, or its filesystem is unknown.

    Read from /proc/self/mountinfo (Linux): the mount point that is the longest prefix of the
    directory's real path, and its type. Anywhere else: assume a network filesystem, since
    the lease lock is the one that is safe everywhere.
    """
    path = os.path.realpath(directory)
    try:
        with open(mountinfo) as f:
            mounts = [line.split() for line in f]
    except OSError:
        return True
    best, fstype = "", ""
    for fields in mounts:
        point = fields[4].encode().decode("unicode_escape")
        kind = fields[fields.index("-") + 1]
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, kind
    return fstype == "" or fstype.startswith(_NETWORK_FILESYSTEMS)


def _crc_of_tail(fd: int, end: int) -> int:
    """The crc32 of the file's last :data:`TAIL` bytes before ``end``, as this host sees them."""
    length = min(TAIL, end)
    return zlib.crc32(os.pread(fd, length, end - length))


def _forget(fd: int) -> None:
    """Drop this host's cached pages of the file: the next read asks the server (a page
    cached before another host wrote there would hide what it wrote). All of them: Linux
    keeps the pages (and large folios) that a range's start only partly covers, and the page
    holding the end this process last read is such a page."""
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


@contextlib.contextmanager
def scratch_file(path: str) -> Iterator[None]:
    """Around writing a scratch file under the lock and renaming it into place: if that
    fails, remove the file, unless the lock was lost. Then the name is the new holder's: it
    removed ours when it took the lock over, and may be writing its own there."""
    try:
        yield
    except LockLostError:
        raise
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def _fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n
