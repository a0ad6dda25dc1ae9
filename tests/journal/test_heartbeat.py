"""Optuna's heartbeats: a trial whose process died is failed, and retried, by the next
``study.optimize``."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
import signal
import time

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.study import StudyDirection
from optuna.trial import TrialState
import pytest

from optuna_journal import FileBackend, JournalStorage
from optuna_journal.records import TrialHeartbeat
from tests import workers


def test_heartbeat_trial_of_a_killed_worker_is_failed_and_retried(tmp_path: Path) -> None:
    path, ready = str(tmp_path / "s.journal"), tmp_path / "ready"
    optuna.create_study(storage=JournalStorage(FileBackend(path)), study_name="s")
    ctx = multiprocessing.get_context("spawn")
    worker = ctx.Process(target=workers.beat_until_killed, args=(path, "s", str(ready)))
    worker.start()
    deadline = time.monotonic() + 120
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)  # a second heartbeat or more
    os.kill(worker.pid, signal.SIGKILL)  # type: ignore[arg-type]
    worker.join()

    storage = JournalStorage(
        FileBackend(path),
        heartbeat_interval=1,
        grace_period=2,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
    )
    beats = [e for e in storage.history(trial_id=0) if isinstance(e.record, TrialHeartbeat)]
    assert len(beats) >= 2
    assert storage.get_trial(0).state is TrialState.RUNNING
    time.sleep(2.5)  # past the grace period since the last heartbeat
    study = optuna.load_study(study_name="s", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)

    failed, retried = study.get_trials(deepcopy=False)
    assert failed.state is TrialState.FAIL
    assert retried.state is TrialState.COMPLETE
    assert retried.system_attrs["failed_trial"] == failed.number
    assert retried.params == failed.params  # the retry ran the same point


def test_heartbeat_only_running_trials_whose_beats_stopped_are_stale(tmp_path: Path) -> None:
    path = str(tmp_path / "s.journal")
    storage = JournalStorage(FileBackend(path), heartbeat_interval=1, grace_period=1)
    study_id = storage.create_new_study([StudyDirection.MINIMIZE], "s")
    silent, beating, finished, never = (storage.create_new_trial(study_id) for _ in range(4))
    for trial_id in (silent, beating, finished):
        storage.record_heartbeat(trial_id)
    storage.set_trial_state_values(finished, TrialState.COMPLETE, [1.0])
    storage.record_heartbeat(finished)  # a beat that crossed the trial's end: ignored
    time.sleep(1.2)
    storage.record_heartbeat(beating)
    assert storage._get_stale_trial_ids(study_id) == [silent]
    storage.snapshot()
    reopened = JournalStorage(FileBackend(path), heartbeat_interval=1, grace_period=1)
    assert reopened.position == storage.position  # all from the snapshot
    assert reopened._get_stale_trial_ids(study_id) == [silent]
    assert never not in reopened._get_stale_trial_ids(study_id)  # no beat: never stale


def test_heartbeat_arguments_are_checked_as_optuna_checks_them(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path / "s.journal")
    for bad in ({"heartbeat_interval": 0}, {"grace_period": -1}):
        with pytest.raises(ValueError):
            JournalStorage(backend, **bad)  # type: ignore[arg-type]
    assert JournalStorage(backend).get_heartbeat_interval() is None


def test_heartbeat_of_a_running_trial_survives_compaction(tmp_path: Path) -> None:
    from optuna_journal.compact import compact

    path = str(tmp_path / "s.journal")
    storage = JournalStorage(FileBackend(path), heartbeat_interval=1, grace_period=1)
    study_id = storage.create_new_study([StudyDirection.MINIMIZE], "s")
    trial_id = storage.create_new_trial(study_id)
    storage.record_heartbeat(trial_id)
    time.sleep(1.2)
    compact(path, keep=0, keep_seconds=0)
    reopened = JournalStorage(FileBackend(path), heartbeat_interval=1, grace_period=1)
    assert reopened._get_stale_trial_ids(study_id) == [trial_id]


def test_heartbeat_grace_no_longer_than_the_lease_lock_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.journal"
    JournalStorage(FileBackend(path, "lease", lock_lease=3), heartbeat_interval=1, grace_period=3)
    assert "is no longer than the lock's lease (3 s)" in caplog.text
    caplog.clear()
    JournalStorage(FileBackend(path, "lease", lock_lease=3), heartbeat_interval=1, grace_period=5)
    JournalStorage(FileBackend(path, "flock"), heartbeat_interval=1, grace_period=1)
    assert "lease" not in caplog.text
