"""Many real writers on one journal file: spawned processes, threads, and SIGKILL."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import optuna
from optuna.trial import TrialState

from optuna_journal import FileBackend, JournalStorage
from tests.workers import optimize, run_spawned


def _study(path: Path, name: str) -> optuna.Study:
    return optuna.create_study(study_name=name, storage=JournalStorage(FileBackend(path)))


def test_four_spawned_processes_run_1000_trials_on_one_file(tmp_path: Path) -> None:
    path = tmp_path / "s.journal"
    _study(path, "mp")
    run_spawned(optimize, [(str(path), "mp", 250)] * 4)
    trials = optuna.load_study(study_name="mp", storage=JournalStorage(FileBackend(path))).trials
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: 1000}
    assert sorted(t.number for t in trials) == list(range(1000))


def test_eight_threads_run_1000_trials_on_one_storage(tmp_path: Path) -> None:
    path = tmp_path / "s.journal"
    study = _study(path, "threads")
    study.sampler = optuna.samplers.RandomSampler()
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=1000, n_jobs=8)
    for trials in (
        study.trials,
        optuna.load_study(study_name="threads", storage=JournalStorage(FileBackend(path))).trials,
    ):
        assert Counter(t.state for t in trials) == {TrialState.COMPLETE: 1000}
        assert sorted(t.number for t in trials) == list(range(1000))


def test_each_enqueued_trial_runs_exactly_once_across_four_processes(tmp_path: Path) -> None:
    path, executed = tmp_path / "s.journal", tmp_path / "executed"
    study = _study(path, "enqueue")
    for i in range(50):
        study.enqueue_trial({"x": i / 10})
    run_spawned(optimize, [(str(path), "enqueue", 13, str(executed))] * 4)
    runs = Counter(int(line) for line in executed.read_text().split())
    assert all(runs[number] == 1 for number in range(50)), runs
    storage = JournalStorage(FileBackend(path))
    trials = optuna.load_study(study_name="enqueue", storage=storage).trials
    assert len(trials) == 52 and sum(runs.values()) == 52
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert [t.params["x"] for t in trials[:50]] == [i / 10 for i in range(50)]
