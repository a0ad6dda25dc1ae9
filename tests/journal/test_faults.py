"""Faults under running processes: a lock holder frozen past its lease, a full disk, the log
deleted, replaced or made read-only."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
import contextlib
import json
import multiprocessing
import os
from pathlib import Path
import shutil
import subprocess
import tempfile
import time

import optuna
from optuna.trial import TrialState
import pytest

from optuna_journal import FileBackend, JournalStorage
from optuna_journal.verify import verify
from tests.faults import ctx, frozen_holder, lines, until
from tests.workers import optimize_until_error, optimize_until_told, quadratic


def test_lease_holder_frozen_past_its_lease_writes_nothing_after_losing_it(
    tmp_path: Path,
) -> None:
    log = tmp_path / "s.journal"
    counts = frozen_holder(log, [log, log], lease=1.0, tmp=tmp_path)
    assert counts["freezes"] == 2


@contextlib.contextmanager
def _small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def _fill(filler: Path) -> None:
    """Take every free byte of the disk ``filler`` is on."""
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 16, 1 << 10, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * chunk)
    assert shutil.disk_usage(filler.parent).free == 0


def _by_pid(path: Path) -> Counter[str]:
    return (
        Counter(line.split()[0] for line in path.read_text().splitlines())
        if path.exists()
        else Counter()
    )


def _each(acks: Path, workers: int, trials: int) -> bool:
    counts = _by_pid(acks)
    return len(counts) == workers and min(counts.values()) >= trials


def _alive(workers: list[multiprocessing.process.BaseProcess]) -> bool:
    assert all(w.is_alive() for w in workers), [w.exitcode for w in workers]
    return True


def _fault_then_recover(
    log: Path, files: Path, inject: Callable[[], None], undo: Callable[[], None], user: int
) -> tuple[int, int, int]:
    """Four processes optimize on ``log``; ``inject`` a fault, wait until every process has
    failed on it with an error naming the journal, check what a reader sees, ``undo`` it, and
    check that they go on and that nothing acknowledged is lost. The processes run as
    ``user`` (root: 0). Return (trials, errors, trials the fault interrupted)."""
    storage = JournalStorage(FileBackend(log), snapshot_every=0)
    optuna.create_study(study_name="s", storage=storage)
    for name in os.listdir(log.parent):  # the log and its lock, for workers that are not root
        os.chmod(log.parent / name, 0o666)
    acks, errors, stop = files / "acks", files / "errors", files / "stop"
    args = (user, str(log), "s", str(acks), str(errors), str(stop))
    workers = [ctx.Process(target=optimize_until_told, args=args) for _ in range(4)]
    for w in workers:
        w.start()
    pids = {str(w.pid) for w in workers}
    try:
        until("40 trials", lambda: _alive(workers) and len(lines(acks)) >= 40)
        inject()
        until("an error in every worker", lambda: set(_by_pid(errors)) == pids)
        assert set(lines(errors)[1::2]) == {"named"}, "an error did not name the journal"

        # Meanwhile a reader sees only whole records, every acknowledged one.
        told = [int(line.split()[1]) for line in acks.read_text().splitlines()]
        now = JournalStorage(FileBackend(log), snapshot_every=0)
        trials = now.get_all_trials(now.get_study_id_from_name("s"))
        assert {t.number for t in trials if t.state == TrialState.COMPLETE} >= set(told)
        assert verify(str(log)).sound

        undo()
        freed = _by_pid(acks)
        errors_when_freed = len(lines(errors)) // 2
        # Each process goes on, and runs past the grace period, so that the trials the fault
        # left RUNNING are failed by their stopped heartbeats.
        until(
            "every worker to go on", lambda: all(_by_pid(acks)[p] >= freed[p] + 10 for p in pids)
        )
        time.sleep(6)
        stop.touch()
        for w in workers:
            w.join(timeout=120)
        assert [w.exitcode for w in workers] == [0] * 4
    finally:
        for w in workers:
            if w.is_alive():
                w.kill()
            w.join()

    errors_in_all = len(lines(errors)) // 2
    assert errors_in_all == errors_when_freed  # no error once the fault was undone
    told = [int(line.split()[1]) for line in acks.read_text().splitlines()]
    final = JournalStorage(FileBackend(log), snapshot_every=0)
    trials = final.get_all_trials(final.get_study_id_from_name("s"))
    assert [t.number for t in trials] == list(range(len(trials)))
    states = Counter(t.state for t in trials)
    complete = {t.number for t in trials if t.state == TrialState.COMPLETE}
    assert complete >= set(told) and len(told) == len(set(told))
    # What the fault interrupted ended FAIL, by its stopped heartbeat, or stays RUNNING where
    # the fault struck before its first beat: Optuna fails only trials that have beaten once
    # (a trial of ask and tell never beats). At most one trial per error.
    assert set(states) <= {TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING}, states
    interrupted = states[TrialState.FAIL] + states[TrialState.RUNNING]
    assert interrupted <= errors_in_all, states
    assert verify(str(log)).sound
    return len(trials), errors_in_all, interrupted


def test_disk_full_under_four_processes_is_a_clear_error_and_they_go_on_once_freed(
    tmp_path: Path,
) -> None:
    with _small_disk(tmp_path / "disk", "3m") as disk:
        filler = disk / "filler"
        counts = _fault_then_recover(
            disk / "s.journal", tmp_path, lambda: _fill(filler), filler.unlink, user=0
        )
    print(f"disk full: {counts[0]} trials, {counts[1]} errors, {counts[2]} trials interrupted")


def test_log_made_read_only_under_four_processes_stops_them_until_writable_again() -> None:
    if os.geteuid() != 0:
        pytest.skip("the workers run as the user nobody, which needs root (CI runs as root)")
    with tempfile.TemporaryDirectory() as directory:
        os.chmod(directory, 0o777)  # the workers, as nobody, write acks and snapshots here
        files = Path(directory)
        log = files / "s.journal"
        counts = _fault_then_recover(
            log, files, lambda: os.chmod(log, 0o444), lambda: os.chmod(log, 0o666), user=65534
        )
    print(f"read-only: {counts[0]} trials, {counts[1]} errors, {counts[2]} trials interrupted")


def _older_copy(log: Path, copy: Path) -> Callable[[], None]:
    shutil.copyfile(log, copy)
    return lambda: os.replace(copy, log)


def _another_journal(log: Path, copy: Path) -> Callable[[], None]:
    other = JournalStorage(FileBackend(copy), snapshot_every=0)
    optuna.create_study(study_name="s", storage=other).optimize(quadratic, n_trials=30)
    return lambda: os.replace(copy, log)


@pytest.mark.parametrize("fault", ["deleted", "older copy", "another journal"])
def test_log_deleted_or_replaced_under_running_processes_is_an_error_never_a_fork(
    tmp_path: Path, fault: str
) -> None:
    log, copy = tmp_path / "s.journal", tmp_path / "copy.journal"
    optuna.create_study(study_name="s", storage=JournalStorage(FileBackend(log)))
    acks, errors = tmp_path / "acks", tmp_path / "errors"
    args = (str(log), "s", str(acks), str(errors))
    workers = [ctx.Process(target=optimize_until_error, args=args) for _ in range(2)]
    for w in workers:
        w.start()
    try:
        until("5 trials of each worker", lambda: _each(acks, 2, 5))
        inject: Callable[[], None] = lambda: log.unlink()  # noqa: E731
        if fault == "older copy":
            inject = _older_copy(log, copy)
        elif fault == "another journal":
            inject = _another_journal(log, copy)
        until("10 more trials of each", lambda: _each(acks, 2, 15))
        left = log.read_bytes() if fault == "deleted" else copy.read_bytes()
        inject()
        for w in workers:
            w.join(timeout=120)
        assert [w.exitcode for w in workers] == [0, 0]
    finally:
        for w in workers:
            if w.is_alive():
                w.kill()
            w.join()
    raised = [json.loads(line) for line in errors.read_text().splitlines()]
    assert len(raised) == 2
    for kind, message in raised:
        assert kind == "LogTruncatedError" and str(log) in message, (kind, message)
    # Nothing was written where the log was: no new log, no appends to the one put back.
    if fault == "deleted":
        assert not log.exists()
        # ... and every acknowledged trial is in what was deleted (read before the deletion).
        assert len(left) > 0
    else:
        assert log.read_bytes() == left
    print(f"{fault}: {len(lines(acks))} trials acknowledged, then {len(raised)} errors")
