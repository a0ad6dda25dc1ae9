"""Crash recovery: torn tails, writers killed at random moments, corruption, repair."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
import random
import shutil
import signal
import time
from typing import Any

import optuna
import pytest

from optuna_journal import CorruptLogError, FileBackend, JournalStorage, LogTruncatedError
from optuna_journal.backends import frames
from optuna_journal.cli import main
from optuna_journal.verify import verify
from tests import logs
from tests.soak import SOAK, slow
from tests.workers import run_trials_until_killed, write_until_killed

ctx = multiprocessing.get_context("spawn")


def _journal(tmp_path: Path) -> tuple[Path, list[int]]:
    """A journal with a few records, and the byte offset where each record's frame ends."""
    path = tmp_path / "s.journal"
    storage = JournalStorage(FileBackend(path), snapshot_every=0)
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    for i in range(4):
        storage.set_study_user_attr(study_id, f"k{i}", "v" * (i * 50))
    return path, [s.end for s in logs.records(path.read_bytes())]


def test_recovery_every_cut_in_the_last_three_records_opens_with_the_records_before_it(
    tmp_path: Path,
) -> None:
    path, ends = _journal(tmp_path)
    whole = path.read_bytes()
    for cut in range(ends[-4], len(whole)):
        path.write_bytes(whole[:cut])
        complete = sum(end <= cut for end in ends)
        storage = JournalStorage(FileBackend(path), snapshot_every=0)
        assert storage.position == complete, cut
        attrs = storage.get_study_user_attrs(0)
        assert sorted(attrs) == [f"k{i}" for i in range(complete - 2)], cut


@pytest.mark.parametrize("where", ["garbage a later mark vouches for", "flipped byte"])
def test_recovery_corruption_is_named_by_verify_and_refused_on_open(
    tmp_path: Path, where: str
) -> None:
    path, ends = _journal(tmp_path)
    data = bytearray(path.read_bytes())
    if where == "flipped byte":
        bad = ends[1]  # the frame after the first record: later appends' marks vouch for it
        data[bad + frames.HEADER_SIZE + 3] ^= 0x08
    else:
        bad = len(data)
        data += b"this is not a frame at all" + frames.mark(bad + 1)
    path.write_bytes(bytes(data))
    report = verify(str(path))
    assert not report.sound and f"byte offset {bad}" in report.problems[0]
    with pytest.raises(CorruptLogError) as info:
        JournalStorage(FileBackend(path))
    assert info.value.offset == bad
    assert main(["repair", str(path)]) == 1  # refuses: a record after it would be cut
    assert path.read_bytes() == bytes(data)


def test_recovery_repair_cuts_a_torn_tail_to_a_backup_and_verify_passes(tmp_path: Path) -> None:
    path, ends = _journal(tmp_path)
    whole = path.read_bytes()
    last = logs.records(whole)[-1].start  # after the last append's mark
    path.write_bytes(whole[: ends[-1] - 7])
    assert not verify(str(path)).sound
    assert main(["repair", str(path)]) == 0
    assert path.read_bytes() == whole[:last]
    (backup,) = tmp_path.glob("s.journal.cut-*")
    assert backup.read_bytes() == whole[last : ends[-1] - 7]
    assert verify(str(path)).sound
    assert main(["repair", str(path)]) == 0  # nothing more to cut


def test_recovery_garbage_no_mark_vouches_for_is_a_torn_tail(tmp_path: Path) -> None:
    """What a power loss can leave past the last synced append (stale blocks, on some
    filesystems): opened without it, named by verify, cut by the next append."""
    path, ends = _journal(tmp_path)
    whole = path.read_bytes()
    path.write_bytes(whole + b"this is not a frame at all")
    report = verify(str(path))
    assert f"torn tail: 26 bytes at byte offset {len(whole)}" in report.problems[0]
    storage = JournalStorage(FileBackend(path), snapshot_every=0)
    assert storage.position == len(ends)
    storage.set_study_user_attr(0, "after", "the crash")
    assert verify(str(path)).sound
    assert storage.get_study_user_attrs(0)["after"] == "the crash"


def test_recovery_repair_force_cuts_corruption_in_the_middle(tmp_path: Path) -> None:
    path, ends = _journal(tmp_path)
    data = bytearray(path.read_bytes())
    data[ends[2] + 1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert main(["repair", "--force", str(path)]) == 0
    assert path.read_bytes() == bytes(data[: ends[2]])
    assert verify(str(path)).sound


def test_recovery_repair_force_under_a_live_writer_stops_it_without_a_hole(
    tmp_path: Path,
) -> None:
    # The writer has read every record; repair --force then cuts a damaged one and all after
    # it. Writing at the end it knew would leave zeros in the log, unreadable to everyone.
    path, ends = _journal(tmp_path)
    writer = JournalStorage(FileBackend(path), snapshot_every=0)
    data = bytearray(path.read_bytes())
    data[ends[2] + 1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert main(["repair", "--force", str(path)]) == 0
    with pytest.raises(LogTruncatedError, match=f"{ends[2]} bytes, shorter than the {ends[-1]}"):
        writer.set_study_user_attr(0, "after", "the cut")
    assert path.read_bytes() == bytes(data[: ends[2]])  # nothing was appended
    assert verify(str(path)).sound
    reopened = JournalStorage(FileBackend(path), snapshot_every=0)
    reopened.set_study_user_attr(0, "after", "the cut")
    assert reopened.get_study_user_attrs(0) == {"k0": "", "after": "the cut"}


def test_recovery_an_older_copy_put_back_stops_the_processes_that_read_past_it(
    tmp_path: Path,
) -> None:
    # Going on would reuse the ids of the lost trials and studies for new ones: a worker's
    # write to its trial would land in another's.
    path, _ = _journal(tmp_path)
    early = JournalStorage(FileBackend(path), snapshot_every=0)
    older = tmp_path / "backup.journal"
    shutil.copy(path, older)
    writer = JournalStorage(FileBackend(path), snapshot_every=0)
    writer.set_study_user_attr(0, "lost", "with the restore")
    reader = JournalStorage(FileBackend(path), snapshot_every=0)
    os.replace(older, path)
    restored = path.read_bytes()
    with pytest.raises(LogTruncatedError, match="lacks records this process has applied"):
        writer.set_study_user_attr(0, "after", "the restore")
    assert path.read_bytes() == restored  # nothing was appended
    for _ in range(2):  # and it goes on refusing, rather than show the older state
        with pytest.raises(LogTruncatedError, match=r"writer .*: up to its record \d+"):
            reader.get_study_user_attrs(0)
    assert "lost" not in early.get_study_user_attrs(0)  # it had read nothing the copy lacks
    reopened = JournalStorage(FileBackend(path), snapshot_every=0)
    reopened.set_study_user_attr(0, "after", "the restore")
    assert early.get_study_user_attrs(0) == reopened.get_study_user_attrs(0)


def _kill_at_random(target: Any, args: tuple[str, ...], acks: Path, rng: random.Random) -> None:
    """Start a writer, wait for its first acknowledged write, SIGKILL it up to 0.3 s later."""
    acks.write_text("")
    child = ctx.Process(target=target, args=args)
    child.start()
    deadline = time.monotonic() + 60
    while not acks.read_text() and time.monotonic() < deadline:
        assert child.is_alive(), "the writer died before it was killed"
        time.sleep(0.005)
    time.sleep(rng.uniform(0, 0.3))
    os.kill(child.pid, signal.SIGKILL)
    child.join()


@slow
@pytest.mark.parametrize("lock, rounds", [("lease", 100), ("flock", 30)])
def test_recovery_writer_killed_at_random_moments_loses_nothing_acknowledged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, lock: str, rounds: int
) -> None:
    """SIGKILL mid-frame, mid-fsync, mid-snapshot (the writer snapshots every 25 records)."""
    path, acks = tmp_path / "s.journal", tmp_path / "acks"
    lease = 0.3
    storage = JournalStorage(FileBackend(path, lock, lock_lease=lease))
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "crash")
    rng = random.Random(0)
    torn = 0
    for _ in range(rounds * 3 if SOAK else rounds):
        _kill_at_random(write_until_killed, (str(path), str(acks), lock, lease), acks, rng)

        reopened = JournalStorage(FileBackend(path, lock, lock_lease=lease))  # must not raise
        attrs = reopened.get_study_user_attrs(study_id)
        missing = [k for k in acks.read_text().split() if k not in attrs]
        assert not missing, f"acknowledged records lost: {missing}"
        found = FileBackend(path, lock, lock_lease=lease).repair(str(tmp_path / "cut"))
        torn += found.torn > 0
        report = verify(str(path))
        assert report.sound, report.lines()
    stale = sum("stale lock" in m for m in caplog.messages)
    print(f"{lock}: rounds that left a torn tail: {torn}, a lease lock to take over: {stale}")
    if lock == "lease":  # a dead holder's flock is released by the kernel: nothing to see
        assert stale, "no kill landed inside an append: the test exercised nothing"


@slow
def test_recovery_writer_with_durability_trial_killed_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    """Unsynced appends are in the page cache, which outlives a killed process."""
    path, acks = tmp_path / "s.journal", tmp_path / "acks"
    storage = JournalStorage(FileBackend(path))
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "crash")
    rng = random.Random(1)
    for _ in range(30 if SOAK else 10):
        _kill_at_random(run_trials_until_killed, (str(path), str(acks)), acks, rng)

        trials = {
            t._trial_id: t for t in JournalStorage(FileBackend(path)).get_all_trials(study_id)
        }
        for line in acks.read_text().splitlines():
            trial_id, what = int(line.split()[0]), line.split()[1]
            trial = trials[trial_id]
            if what == "param":
                assert trial.params == {"x": 0.5}
            elif what == "complete":
                assert trial.state == optuna.trial.TrialState.COMPLETE
            else:
                assert int(what.removeprefix("step")) in trial.intermediate_values
        FileBackend(path).repair(str(tmp_path / "cut"))
        assert verify(str(path)).sound
