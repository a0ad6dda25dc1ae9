"""Views of the past (JournalStorage.at) and the history of a study or trial."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
import pickle
import time

import optuna
from optuna.distributions import FloatDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
import pytest

from optuna_journal import FileBackend, JournalStorage, ReadOnlyError
from optuna_journal import records as r
from optuna_journal.replay import Reason, Rejected


def _study(tmp_path: Path) -> tuple[JournalStorage, optuna.Study, list[int]]:
    """A study of 6 trials, and the position after each trial finished."""
    storage = JournalStorage(FileBackend(tmp_path / "s.journal"))
    study = optuna.create_study(
        storage=storage, study_name="s", sampler=optuna.samplers.RandomSampler(0)
    )
    positions = []
    for _ in range(6):
        trial = study.ask()
        trial.report(0.5, 0)
        study.tell(trial, trial.suggest_float("x", 0, 1))
        positions.append(storage.position)
    return storage, study, positions


def test_view_at_a_position_shows_the_log_prefix(tmp_path: Path) -> None:
    storage, study, positions = _study(tmp_path)
    for n, position in enumerate(positions, start=1):
        view = storage.at(position=position)
        past = optuna.load_study(study_name="s", storage=view)
        assert [t.number for t in past.trials] == list(range(n))
        assert past.trials == study.trials[:n]
        assert past.best_trial == min(study.trials[:n], key=lambda t: t.value)
    assert storage.at(position=1).get_all_studies() == []
    assert storage.at(position=0).get_all_studies() == []


def test_view_works_with_dataframes_and_visualization(tmp_path: Path) -> None:
    storage, study, positions = _study(tmp_path)
    past = optuna.load_study(study_name="s", storage=storage.at(position=positions[2]))
    frame = past.trials_dataframe()
    assert list(frame["number"]) == [0, 1, 2]
    assert list(frame["params_x"]) == [t.params["x"] for t in study.trials[:3]]
    figure = optuna.visualization.plot_optimization_history(past)
    assert len(figure.data[0].x) == 3


def test_view_at_a_moment_shows_what_was_written_before_it(tmp_path: Path) -> None:
    storage = JournalStorage(FileBackend(tmp_path / "s.journal"))
    study = optuna.create_study(storage=storage, study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    time.sleep(0.01)
    moment = datetime.now()  # naive local time, as Optuna's datetimes are
    time.sleep(0.01)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    past = optuna.load_study(study_name="s", storage=storage.at(time=moment))
    assert past.trials == study.trials[:3]


def test_view_refuses_writes(tmp_path: Path) -> None:
    storage, study, positions = _study(tmp_path)
    view = storage.at(position=positions[0])
    study_id = view.get_study_id_from_name("s")
    with pytest.raises(ReadOnlyError, match=f"as of record {positions[0]}"):
        view.create_new_trial(study_id)
    with pytest.raises(ReadOnlyError):
        view.set_trial_state_values(0, TrialState.RUNNING)
    with pytest.raises(ReadOnlyError):
        view.snapshot()
    with pytest.raises(ValueError, match="exactly one"):
        storage.at()
    restored = pickle.loads(pickle.dumps(view))
    assert restored.get_all_trials(study_id) == view.get_all_trials(study_id)


def test_view_does_not_move_on(tmp_path: Path) -> None:
    storage, study, positions = _study(tmp_path)
    view = storage.at(position=positions[-1])
    study.optimize(lambda t: 1.0, n_trials=2)
    assert len(view.get_all_trials(study._study_id)) == 6


def test_history_of_a_trial_lists_every_record_with_writer_time_and_verdict(
    tmp_path: Path,
) -> None:
    storage = JournalStorage(FileBackend(tmp_path / "s.journal"))
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    other = storage.create_new_trial(study_id)
    trial_id = storage.create_new_trial(study_id)
    storage.set_trial_param(trial_id, "x", 0.5, FloatDistribution(0, 1))
    storage.set_trial_intermediate_value(other, 0, 1.0)
    storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [1.0])
    with pytest.raises(UpdateFinishedTrialError):
        storage.set_trial_user_attr(trial_id, "late", 1)

    entries = storage.history(trial_id=trial_id)
    kinds = [type(e.record) for e in entries]
    assert kinds == [r.TrialCreated, r.TrialParamSet, r.TrialStateSet, r.TrialUserAttrSet]
    assert [e.number for e in entries] == sorted(e.number for e in entries)
    assert entries[0].verdict == trial_id
    rejected = entries[-1].verdict
    assert isinstance(rejected, Rejected) and rejected.reason is Reason.TRIAL_FINISHED
    assert all(e.record.writer == entries[0].record.writer for e in entries)
    assert all(e.record.at.tzinfo is not None for e in entries)

    study_entries = storage.history(study_id=study_id)
    assert [type(e.record) for e in study_entries] == [
        r.StudyCreated,
        r.TrialCreated,
        r.TrialCreated,
    ]
