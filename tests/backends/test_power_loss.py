"""Group commit under a simulated power loss.

Writers sync after releasing the lock, so a power loss can keep a later writer's frames and
lose an earlier one's, leaving a gap before sound frames. Appends here go through a layer
that keeps what a disk would: the bytes an ``fsync`` covered are durable, the rest only in
the page cache. When the power fails, the file a reboot finds is the durable bytes plus each
unsynced page written or not, at random, in no order (and the file's size from any of the
writes). Every acknowledged append must be in it, and it must open without repair.
"""

from __future__ import annotations

from collections.abc import Iterator
import os
from pathlib import Path
import random
import threading
import time

import optuna
import pytest

from optuna_journal import CorruptLogError, FileBackend, JournalStorage
from optuna_journal.backends import frames
from optuna_journal.verify import verify

PAGE = 4096


class PowerLoss(BaseException):
    """Raised in a writer that touches the log after the power failed: it stops there."""


class Disk:
    """What stable storage holds of one file, beside the page cache that the real file is.

    ``os.pwrite``, ``os.ftruncate`` and ``os.fsync`` on the file are watched: each change is
    queued; an ``fsync`` takes a while (a random pause) and makes durable the changes queued
    before it was called, unless the power fails first.
    """

    def __init__(self, path: Path, rng: random.Random) -> None:
        self.inode = path.stat().st_ino
        self.durable = bytearray(path.read_bytes())  # the test synced it
        self.queued: list[tuple[int, int, bytes | None]] = []  # (seq, offset or size, data)
        self.seq = 0
        self.failed = False
        self.rng = rng
        self.mutex = threading.Lock()
        self._real = os.pwrite, os.ftruncate, os.fsync

    def _ours(self, fd: int) -> bool:
        return os.fstat(fd).st_ino == self.inode

    def _queue(self, at: int, data: bytes | None) -> None:
        with self.mutex:
            if self.failed:
                raise PowerLoss
            self.seq += 1
            self.queued.append((self.seq, at, data))

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        if self._ours(fd):
            self._queue(offset, bytes(data))
        return self._real[0](fd, data, offset)

    def ftruncate(self, fd: int, size: int) -> None:
        if self._ours(fd):
            self._queue(size, None)
        self._real[1](fd, size)

    def fsync(self, fd: int) -> None:
        if not self._ours(fd):
            self._real[2](fd)
            return
        with self.mutex:
            if self.failed:
                raise PowerLoss
            covered = self.seq
        time.sleep(self.rng.random() * 0.002)  # the disk at work; others append meanwhile
        with self.mutex:
            if self.failed:
                raise PowerLoss  # the power failed before the sync finished
            while self.queued and self.queued[0][0] <= covered:
                _, at, data = self.queued.pop(0)
                _apply(self.durable, at, data)

    def fail(self) -> bytes:
        """The power fails: what a reboot finds in the file."""
        with self.mutex:
            self.failed = True
        image = bytearray(self.durable)
        sizes = [len(image)]
        for _, at, data in self.queued:
            if data is None:
                if self.rng.random() < 0.5:
                    _apply(image, at, None)
                continue
            sizes.append(at + len(data))
            for start in range(at - at % PAGE, at + len(data), PAGE):
                if self.rng.random() < 0.5:  # this page reached the disk
                    lo, hi = max(start, at), min(start + PAGE, at + len(data))
                    _apply(image, lo, data[lo - at : hi - at])
        size = self.rng.choice(sizes)  # the file's size, as some write left it
        if len(image) < size:
            image += bytes(size - len(image))
        return bytes(image[: max(size, len(self.durable))])

    def __enter__(self) -> Disk:
        os.pwrite, os.ftruncate, os.fsync = self.pwrite, self.ftruncate, self.fsync  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        os.pwrite, os.ftruncate, os.fsync = self._real


def _apply(image: bytearray, at: int, data: bytes | None) -> None:
    if data is None:
        del image[at:]
        return
    if len(image) < at:
        image += bytes(at - len(image))
    image[at : at + len(data)] = data


def _write(path: Path, study_id: int, name: str, acks: list[str]) -> None:
    """Alternate an unsynced append (a report of the writer's trial) with a synced one (a
    study attr naming that report): the sync makes both durable before the attr is
    acknowledged."""
    storage = JournalStorage(FileBackend(path), snapshot_every=0)
    try:
        trial_id = storage.create_new_trial(study_id)
        for i in range(10_000):
            storage.set_trial_intermediate_value(trial_id, i, float(i))
            key = f"{name}-{i}"
            storage.set_study_user_attr(study_id, key, [trial_id, i, "v" * (i % 7 * 300)])
            acks.append(key)
    except PowerLoss:
        pass


def _crash(directory: Path, seed: int) -> tuple[bytes, list[str]]:
    """Three writers append to one log until the power fails at a random moment."""
    rng = random.Random(seed)
    path = directory / f"{seed}.journal"
    storage = JournalStorage(FileBackend(path), snapshot_every=0)
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    acks: list[str] = []
    with Disk(path, rng) as disk:
        writers = [
            threading.Thread(target=_write, args=(path, study_id, f"w{n}", acks)) for n in range(3)
        ]
        for w in writers:
            w.start()
        time.sleep(rng.uniform(0.02, 0.2))
        image = disk.fail()
        for w in writers:
            w.join()
    return image, list(acks)


def _gap(image: bytes) -> bool:
    """Whether damage comes before sound frames: what syncing outside the lock risks."""
    parsed = frames.parse(image[len(frames.MAGIC) :])
    rest = image[len(frames.MAGIC) + parsed.stop :]
    return bool(rest.strip(b"\0")) and any(True for _ in frames.marks(rest))


def _crashes(tmp_path: Path, n: int) -> Iterator[tuple[Path, bytes, list[str]]]:
    for seed in range(n):
        image, acks = _crash(tmp_path, seed)
        after = tmp_path / f"{seed}-after.journal"
        after.write_bytes(image)
        yield after, image, acks


def test_power_loss_keeps_every_acknowledged_append_and_opens_without_repair(
    tmp_path: Path,
) -> None:
    gaps = 0
    for after, image, acks in _crashes(tmp_path, 40):
        gaps += _gap(image)
        storage = JournalStorage(FileBackend(after), snapshot_every=0)
        kept = storage.get_study_user_attrs(0)
        assert set(acks) <= set(kept), sorted(set(acks) - set(kept))
        for key in acks:  # and the unsynced report before each, made durable by its sync
            trial_id, step, _ = kept[key]
            assert storage.get_trial(trial_id).intermediate_values[step] == step
        # The next writer cuts what the power loss left unsynced, and the log is sound.
        storage.set_study_user_attr(0, "after", "the crash")
        assert verify(str(after)).sound, verify(str(after)).lines()
        again = JournalStorage(FileBackend(after), snapshot_every=0).get_study_user_attrs(0)
        assert again == {**kept, "after": "the crash"}
    assert gaps > 0, "no power loss left a gap before sound frames: the test tests nothing"


def test_power_loss_damage_that_a_later_mark_vouches_for_is_refused(tmp_path: Path) -> None:
    """Damage to bytes a later append's mark says were durable is the disk's, not a power
    loss's: it raises, naming where, and no writer cuts it."""
    (after, image, _), *_ = _crashes(tmp_path, 1)
    vouched = [durable for _, durable in frames.marks(image) if durable > 100]
    durable = vouched[len(vouched) // 2]
    data = bytearray(image)
    data[durable - 5] ^= 0x01  # in the last frame that mark vouches for
    after.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError, match=str(after)):
        JournalStorage(FileBackend(after), snapshot_every=0)
    with pytest.raises(CorruptLogError):
        FileBackend(after).append([b"x"])
    assert after.read_bytes() == bytes(data)


def test_log_without_marks_keeps_syncing_under_the_lock_and_reads_strictly(
    tmp_path: Path,
) -> None:
    """A log made before marks existed: its writers add none (a reader of that version would
    stop at one), and damage in its last frame still raises."""
    path = tmp_path / "old.journal"
    storage = JournalStorage(FileBackend(path), snapshot_every=0)
    storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    record_frames = frames.parse(path.read_bytes()[len(frames.MAGIC) :]).payloads
    path.write_bytes(frames.MAGIC + b"".join(frames.pack(p) for p in record_frames))
    JournalStorage(FileBackend(path), snapshot_every=0).set_study_user_attr(0, "k", 1)
    data = bytearray(path.read_bytes())
    assert not list(frames.marks(bytes(data)))
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError):
        JournalStorage(FileBackend(path), snapshot_every=0)
