"""compact: a shorter log that replays to the same studies, trials and ids."""

from __future__ import annotations

import itertools
from pathlib import Path
import time

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
import pytest

from optuna_journal import CorruptLogError, FileBackend, JournalStorage, log
from optuna_journal import records as r
from optuna_journal.compact import Compaction, _observable, compact
from optuna_journal.interop import export_optuna
from optuna_journal.verify import verify
from tests.workers import optimize_through


def _busy_journal(path: Path) -> JournalStorage:
    storage = JournalStorage(FileBackend(path), snapshot_every=0)
    doomed = optuna.create_study(storage=storage, study_name="doomed")
    doomed.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    kept = optuna.create_study(storage=storage, study_name="kept")
    for i in range(20):
        kept.set_user_attr("progress", i)  # overwritten: 20 records fold into 1

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_categorical("c", [1, True, 1.0])  # equal values, distinct choices
        for step in range(5):
            trial.report(step * 0.1, step)
        return trial.suggest_float("x", 0, 1)

    kept.optimize(objective, n_trials=6)
    optuna.delete_study(study_name="doomed", storage=storage)
    later = optuna.create_study(storage=storage, study_name="later")
    later.enqueue_trial({"x": 0.5})  # WAITING
    storage.create_new_trial(later._study_id)  # RUNNING
    running = storage.create_new_trial(kept._study_id)
    storage.set_trial_param(running, "c", 1, CategoricalDistribution([1, True, 1.0]))
    return storage


def test_compact_folds_history_and_keeps_every_id(tmp_path: Path) -> None:
    path = tmp_path / "s.journal"
    before_compaction = _busy_journal(path)
    original = path.read_bytes()
    expected = _observable(JournalStorage(FileBackend(path))._state)

    done = compact(str(path), archive=True, keep=0, keep_seconds=0)
    assert done.bytes_after < done.bytes_before and done.records_after < done.records_before
    assert done.archive is not None and Path(done.archive).read_bytes() == original
    assert _observable(JournalStorage(FileBackend(path))._state) == expected
    assert verify(str(path)).sound
    folded = [rec for _, rec in log.records(FileBackend(path))]
    assert isinstance(folded[-1], r.LogCompacted) and folded[-1].archive == done.archive

    # A process that had the journal open notices, replays the new log, and carries on.
    kept = before_compaction.get_study_id_from_name("kept")
    new_trial = before_compaction.create_new_trial(kept)
    assert new_trial == 12  # ids go on from where they were
    fresh = JournalStorage(FileBackend(path))
    assert fresh.get_trial(new_trial) == before_compaction.get_trial(new_trial)
    assert [t.state for t in fresh.get_all_trials(fresh.get_study_id_from_name("later"))] == [
        TrialState.WAITING,
        TrialState.RUNNING,
    ]

    # Optuna's own journal replays the compacted log to the same ids, too.
    export_optuna(FileBackend(path), str(tmp_path / "optuna.log"))
    theirs = optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "optuna.log")))
    ours = JournalStorage(FileBackend(path))
    for study in ours.get_all_studies():
        assert theirs.get_all_trials(study._study_id) == ours.get_all_trials(study._study_id)


def test_compact_keeps_recent_records_as_they_were(tmp_path: Path) -> None:
    path = tmp_path / "s.journal"
    _busy_journal(path)
    last = [rec for _, rec in log.records(FileBackend(path))][-5:]
    compact(str(path), keep=5, keep_seconds=0)
    after = [rec for _, rec in log.records(FileBackend(path))]
    assert after[-5:] == last and isinstance(after[-6], r.LogCompacted)


def test_compact_under_a_storage_whose_history_and_views_read_the_new_log_first(
    tmp_path: Path,
) -> None:
    # They read through the storage's own backend, from the start of the new file; the
    # storage's position is still one in the old file.
    path = tmp_path / "s.journal"
    storage = _busy_journal(path)
    kept = storage.get_study_id_from_name("kept")
    compact(str(path), keep=0, keep_seconds=0)
    assert storage.history(study_id=kept)[0].record.name == "kept"
    assert len(storage.at(position=3).get_all_studies()) == 1
    assert storage.get_n_trials(kept) == 7
    new_trial = storage.create_new_trial(kept)
    assert new_trial == 12
    assert JournalStorage(FileBackend(path)).get_all_trials(kept) == storage.get_all_trials(kept)


def test_compact_under_a_storage_opened_from_a_snapshot_with_no_tail(tmp_path: Path) -> None:
    path = tmp_path / "s.journal"
    _busy_journal(path).snapshot()
    storage = JournalStorage(FileBackend(path), snapshot_every=0)  # all from the snapshot
    kept = storage.get_study_id_from_name("kept")
    compact(str(path), keep=0, keep_seconds=0)
    assert storage.create_new_trial(kept) == 12
    assert JournalStorage(FileBackend(path)).get_all_trials(kept) == storage.get_all_trials(kept)


def test_compact_refuses_a_corrupt_log_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.journal"
    _busy_journal(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError):
        compact(str(path), keep=0, keep_seconds=0)
    assert path.read_bytes() == bytes(data)
    assert not list(tmp_path.glob("*.tmp"))


def test_compact_three_times_under_four_optimizing_processes_loses_no_trial(
    tmp_path: Path,
) -> None:
    # Each compaction swaps in a new file under the lock while the workers read and append:
    # every worker catches up with the new log and goes on, and every acknowledged trial is
    # there once.
    path = tmp_path / "s.journal"
    compactions: list[Compaction] = []

    def compact_thrice() -> None:
        for _ in range(3):
            compactions.append(compact(str(path), keep=0, keep_seconds=0))
            time.sleep(0.2)

    optimize_through(str(path), "busy", 100, tmp_path / "acks", compact_thrice)
    assert all(c.records_after < c.records_before for c in compactions)
    # The workers appended between the compactions: each swapped a log in under live writers.
    assert all(
        later.records_before > earlier.records_after
        for earlier, later in itertools.pairwise(compactions)
    )
    assert verify(str(path)).sound
