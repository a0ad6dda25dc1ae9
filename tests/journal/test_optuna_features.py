"""Optuna features that reach the storage in their own ways: copy_study (artifacts are in
``test_artifacts.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import pytest

from optuna_journal import open_storage

if TYPE_CHECKING:
    pass

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def test_copy_study_from_sqlite_keeps_every_trial(tmp_path: Path) -> None:
    source = optuna.create_study(storage=f"sqlite:///{tmp_path / 'old.db'}", study_name="old")
    source.set_user_attr("note", "from sqlite")

    def objective(trial: optuna.Trial) -> float:
        trial.report(0.5, 0)
        trial.set_user_attr("u", trial.number)
        return trial.suggest_int("n", 0, 10) + trial.suggest_float("f", 0, 1)

    source.optimize(objective, n_trials=5)
    optuna.copy_study(
        from_study_name="old",
        from_storage=f"sqlite:///{tmp_path / 'old.db'}",
        to_storage=open_storage(tmp_path / "s.journal"),
    )
    copied = optuna.load_study(study_name="old", storage=open_storage(tmp_path / "s.journal"))
    assert copied.user_attrs == {"note": "from sqlite"}
    for a, b in zip(source.trials, copied.trials, strict=True):
        assert (a.number, a.state, a.values, a.params, a.distributions) == (
            b.number,
            b.state,
            b.values,
            b.params,
            b.distributions,
        )
        assert (a.user_attrs, a.intermediate_values) == (b.user_attrs, b.intermediate_values)
        assert (a.datetime_start, a.datetime_complete) == (b.datetime_start, b.datetime_complete)
