"""Round trips with Optuna's own storages: import from them, export to Optuna's journal."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.storages.journal import JournalFileBackend

from optuna_journal import open_storage
from optuna_journal.cli import main


def _optuna_journal(path: Path) -> BaseStorage:
    """An Optuna journal with every kind of trial Optuna makes, and Rustuna's DISCARD_TRIALS."""
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    study = optuna.create_study(
        storage=storage,
        study_name="single",
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2),
    )
    study.set_user_attr("owner", "me")
    storage.set_study_system_attr(study._study_id, "nan", math.nan)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -5, 5)
        n = trial.suggest_int("n", 1, 64, log=True)
        c = trial.suggest_categorical("c", [None, True, 1.5, "s"])
        trial.set_user_attr("c_was", c)
        trial.report(math.nan if trial.number == 1 else x, 0)
        trial.report(x * 2, 1)
        if trial.number == 3:
            raise RuntimeError("a failed trial")
        if trial.number == 4:
            return math.inf
        if trial.should_prune():
            raise optuna.TrialPruned()
        return x * x + n

    study.optimize(objective, n_trials=12, catch=(RuntimeError,))
    study.enqueue_trial({"x": 1.0, "n": 2, "c": "s"})  # left WAITING
    other = optuna.create_study(
        storage=storage, study_name="multi", directions=["minimize", "maximize"]
    )
    other.optimize(lambda t: (t.suggest_float("y", 0, 1), -math.inf), n_trials=3)
    optuna.delete_study(
        study_name=optuna.create_study(storage=storage).study_name, storage=storage
    )
    with open(path, "a") as f:  # Rustuna's operation: Optuna's replay skips it, so must we
        f.write(
            json.dumps({"op_code": 10, "worker_id": "rustuna", "study_id": 0, "trial_ids": []})
            + "\n"
        )
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(map(_same, a, b))
    return bool(a == b)


def _assert_same_studies(expected: BaseStorage, actual: BaseStorage) -> None:
    want = {s.study_name: s for s in expected.get_all_studies()}
    got = {s.study_name: s for s in actual.get_all_studies()}
    assert want.keys() == got.keys()
    for name, w in want.items():
        g = got[name]
        assert w.directions == g.directions
        assert _same(w.user_attrs, g.user_attrs) and _same(w.system_attrs, g.system_attrs)
        wt = expected.get_all_trials(w._study_id)
        gt = actual.get_all_trials(g._study_id)
        assert len(wt) == len(gt)
        for a, b in zip(wt, gt, strict=True):
            for field in (
                "number",
                "state",
                "values",
                "params",
                "distributions",
                "user_attrs",
                "system_attrs",
                "intermediate_values",
                "datetime_start",
                "datetime_complete",
            ):
                assert _same(getattr(a, field), getattr(b, field)), (name, a.number, field)


def test_import_an_optuna_journal_then_export_it_back_for_optuna(tmp_path: Path) -> None:
    original = _optuna_journal(tmp_path / "optuna.log")
    ours = tmp_path / "ours.journal"
    assert main(["import", str(tmp_path / "optuna.log"), str(ours)]) == 0
    _assert_same_studies(original, open_storage(ours))

    assert main(["export", str(ours), "--format", "optuna", "-o", str(tmp_path / "back.log")]) == 0
    text = (tmp_path / "back.log").read_text()
    assert "NaN" in text and "Infinity" in text  # as Optuna writes them
    replayed = optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "back.log")))
    _assert_same_studies(original, replayed)


def test_export_for_optuna_keeps_the_ids_of_a_log_with_history(tmp_path: Path) -> None:
    ours = open_storage(tmp_path / "ours.journal")
    doomed = optuna.create_study(storage=ours)
    doomed.optimize(lambda t: 1.0, n_trials=2)
    optuna.delete_study(study_name=doomed.study_name, storage=ours)
    kept = optuna.create_study(storage=ours, study_name="kept")
    kept.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    export = [
        "export",
        str(tmp_path / "ours.journal"),
        "--format",
        "optuna",
        "-o",
        str(tmp_path / "back.log"),
    ]
    assert main(export) == 0
    replayed = optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "back.log")))
    assert [t._trial_id for t in replayed.get_all_trials(1)] == [t._trial_id for t in kept.trials]
    _assert_same_studies(ours, replayed)
    assert main(export) == 1  # never overwrites


def test_import_from_an_optuna_storage_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    study = optuna.create_study(storage=url, study_name="sql")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=5)
    assert main(["import", url, str(tmp_path / "ours.journal")]) == 0
    _assert_same_studies(optuna.storages.get_storage(url), open_storage(tmp_path / "ours.journal"))
    assert main(["import", url, str(tmp_path / "ours.journal")]) == 1  # the name is taken
