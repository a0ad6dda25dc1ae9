"""Optuna features that reach the storage in their own ways: artifacts and copy_study.

Artifacts live in an artifact store and their metadata in the journal (system attrs). The
stores are Optuna's own, with their real client libraries; S3 and GCS are local servers on
loopback (moto's, and gcp-storage-emulator), since the real services cannot be reached here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from gcp_storage_emulator.server import create_server
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage as gcs
from moto.server import ThreadedMotoServer
import optuna
from optuna.artifacts import (
    Backoff,
    Boto3ArtifactStore,
    FileSystemArtifactStore,
    GCSArtifactStore,
    download_artifact,
    get_all_artifact_meta,
    upload_artifact,
)
import pytest

from optuna_journal import open_storage
from optuna_journal.redis_server import _free_port

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


@pytest.fixture(params=["filesystem", "s3", "gcs"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    """An artifact store of each kind Optuna has, empty."""
    if request.param == "filesystem":
        (tmp_path / "artifacts").mkdir()
        yield FileSystemArtifactStore(str(tmp_path / "artifacts"))
    elif request.param == "s3":
        port = _free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        client = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        client.create_bucket(Bucket="artifacts")
        yield Backoff(Boto3ArtifactStore("artifacts", client=client))  # as Optuna's docs show
        server.stop()
    else:
        port = _free_port()
        server = create_server("127.0.0.1", port, in_memory=True)
        server.start()
        client = gcs.Client(
            project="test",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": f"http://127.0.0.1:{port}"},
        )
        client.create_bucket("artifacts")
        yield GCSArtifactStore("artifacts", client=client)
        server.stop()


def test_artifacts_upload_list_and_download_through_the_journal(
    store: ArtifactStore, tmp_path: Path
) -> None:
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
