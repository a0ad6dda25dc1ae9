"""Optuna features that reach the storage in their own ways: artifacts and copy_study."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.artifacts import (
    FileSystemArtifactStore,
    download_artifact,
    get_all_artifact_meta,
    upload_artifact,
)

from optuna_journal import open_storage


def test_artifacts_upload_list_and_download_through_the_journal(tmp_path: Path) -> None:
    store = FileSystemArtifactStore(str(tmp_path / "artifacts"))
    (tmp_path / "artifacts").mkdir()
    model = tmp_path / "model.txt"
    model.write_text("weights")
    study = optuna.create_study(storage=open_storage(tmp_path / "s.journal"), study_name="a")

    def objective(trial: optuna.Trial) -> float:
        upload_artifact(artifact_store=store, file_path=str(model), study_or_trial=trial)
        return 1.0

    study.optimize(objective, n_trials=2)
    upload_artifact(artifact_store=store, file_path=str(model), study_or_trial=study)

    reopened = optuna.load_study(study_name="a", storage=open_storage(tmp_path / "s.journal"))
    trial_meta = get_all_artifact_meta(reopened.trials[1], storage=reopened._storage)
    assert [m.filename for m in trial_meta] == ["model.txt"]
    assert len(get_all_artifact_meta(reopened)) == 1
    download_artifact(
        artifact_store=store,
        file_path=str(tmp_path / "back.txt"),
        artifact_id=trial_meta[0].artifact_id,
    )
    assert (tmp_path / "back.txt").read_text() == "weights"


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
