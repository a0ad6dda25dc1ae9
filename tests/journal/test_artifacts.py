"""Artifacts: our atomic, verified store beside Optuna's own (the file system, S3 through
moto's server and GCS through its emulator, both on loopback, each also in ``Backoff``), the
``artifact.*`` records every upload and removal leaves in the log, and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
import hashlib
import json
import multiprocessing
import os
from pathlib import Path
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
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
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.exceptions import UpdateFinishedTrialError
import pytest

from optuna_journal import open_storage
from optuna_journal.artifacts import (
    ArtifactCorruptError,
    JournalArtifactStore,
    artifacts,
    check,
    remove_artifact,
)
from optuna_journal.cli import main
from optuna_journal.records import ArtifactRemoved, ArtifactUploaded
from optuna_journal.redis_server import _free_port
from tests.workers import download_artifacts_until, upload_artifacts, write_artifact_slowly

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
ctx = multiprocessing.get_context("spawn")


def _s3_client(port: int, config: Config | None = None) -> Any:
    """A boto3 S3 client of an S3 server on loopback ``port`` (test credentials)."""
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=config,
    )


def _fast(store: ArtifactStore) -> Backoff:
    return Backoff(store, max_retries=3, min_delay=0.01, max_delay=0.05)


@pytest.fixture(
    params=[
        f"{kind}{wrap}"
        for kind in ("ours", "filesystem", "s3", "gcs")
        for wrap in ("", "+backoff")
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    """An empty artifact store of each kind, bare and in Optuna's ``Backoff``."""
    kind, _, wrap = request.param.partition("+")
    inner: ArtifactStore
    stop = None
    if kind == "ours":
        inner = JournalArtifactStore(tmp_path / "artifacts")
    elif kind == "filesystem":
        (tmp_path / "artifacts").mkdir()
        inner = FileSystemArtifactStore(str(tmp_path / "artifacts"))
    elif kind == "s3":
        port = _free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        stop = server.stop
        client = _s3_client(port)
        client.create_bucket(Bucket="artifacts")
        inner = Boto3ArtifactStore("artifacts", client=client)
    else:
        port = _free_port()
        emulator = create_server("127.0.0.1", port, in_memory=True)
        emulator.start()
        stop = emulator.stop
        gclient = gcs.Client(
            project="test",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": f"http://127.0.0.1:{port}"},
        )
        gclient.create_bucket("artifacts")
        inner = GCSArtifactStore("artifacts", client=gclient)
    yield _fast(inner) if wrap else inner
    if stop is not None:
        stop()


def test_artifacts_of_a_trial_a_frozen_trial_and_a_study(
    store: ArtifactStore, tmp_path: Path
) -> None:
    storage = open_storage(tmp_path / "s.journal")
    study = optuna.create_study(storage=storage, study_name="a")
    files = {}
    for name in ("trial.bin", "frozen.bin", "study.bin"):
        files[name] = os.urandom(100_000)
        (tmp_path / name).write_bytes(files[name])

    trial = study.ask()  # running: Optuna lets only unfinished trials take attrs
    upload_artifact(
        artifact_store=store, file_path=str(tmp_path / "trial.bin"), study_or_trial=trial
    )
    study.enqueue_trial({})
    waiting = study.trials[-1]  # a FrozenTrial, still updatable
    upload_artifact(
        artifact_store=store,
        file_path=str(tmp_path / "frozen.bin"),
        study_or_trial=waiting,
        storage=storage,
    )
    upload_artifact(
        artifact_store=store, file_path=str(tmp_path / "study.bin"), study_or_trial=study
    )

    reopened = optuna.load_study(study_name="a", storage=open_storage(tmp_path / "s.journal"))
    owners = [
        (reopened.trials[0], "trial.bin"),
        (reopened.trials[1], "frozen.bin"),
        (reopened, "study.bin"),
    ]
    for owner, name in owners:
        meta = get_all_artifact_meta(owner, storage=reopened._storage)
        assert [(m.filename, m.mimetype) for m in meta] == [(name, "application/octet-stream")]
        out = tmp_path / f"back-{name}"
        download_artifact(
            artifact_store=store, file_path=str(out), artifact_id=meta[0].artifact_id
        )
        assert out.read_bytes() == files[name]
    listed = artifacts(reopened._storage._backend)  # type: ignore[attr-defined]
    assert [(a.filename, a.trial) for a in listed] == [
        ("trial.bin", 0),
        ("frozen.bin", 1),
        ("study.bin", None),
    ]
    if isinstance(store, JournalArtifactStore):
        assert all(a.sha256 and a.size == 100_000 for a in listed)
    assert check(listed, store) == []

    for owner, _ in owners:
        meta = get_all_artifact_meta(owner, storage=reopened._storage)
        remove_artifact(owner, meta[0].artifact_id, store, storage=reopened._storage)
        assert get_all_artifact_meta(owner, storage=reopened._storage) == []
        with pytest.raises(ArtifactNotFound):
            store.open_reader(meta[0].artifact_id)
    assert artifacts(reopened._storage._backend) == []  # type: ignore[attr-defined]


def test_upload_to_a_finished_trial_is_refused_as_optuna_does_and_check_names_the_bytes(
    tmp_path: Path,
) -> None:
    storage = open_storage(tmp_path / "s.journal")
    study = optuna.create_study(storage=storage)
    study.optimize(lambda t: 1.0, n_trials=1)
    store = JournalArtifactStore(tmp_path / "artifacts")
    (tmp_path / "m.bin").write_bytes(b"model")
    with pytest.raises(UpdateFinishedTrialError):
        upload_artifact(
            artifact_store=store,
            file_path=str(tmp_path / "m.bin"),
            study_or_trial=study.best_trial,
            storage=storage,
        )
    (orphan,) = store.listing()[0]  # Optuna writes the bytes before the metadata
    assert [(p["problem"], p["artifact_id"]) for p in check([], store)] == [("orphan", orphan)]


def test_four_writers_and_two_readers_never_see_a_partial_artifact(tmp_path: Path) -> None:
    journal, store_path = str(tmp_path / "s.journal"), str(tmp_path / "artifacts")
    optuna.create_study(storage=open_storage(journal), study_name="up")
    JournalArtifactStore(store_path)
    stop = tmp_path / "stop"
    readers = [
        ctx.Process(
            target=download_artifacts_until,
            args=(store_path, str(stop), str(tmp_path / f"reads-{i}")),
        )
        for i in range(2)
    ]
    writers = [
        ctx.Process(target=upload_artifacts, args=(journal, store_path, "up", 50, seed))
        for seed in range(4)
    ]
    for p in readers + writers:
        p.start()
    for p in writers:
        p.join(timeout=300)
    stop.touch()
    for p in readers:
        p.join(timeout=120)
    assert [p.exitcode for p in readers + writers] == [0] * 6, "a partial read or a crash"
    assert all(int((tmp_path / f"reads-{i}").read_text()) > 0 for i in range(2))

    store = JournalArtifactStore(store_path)
    listed = artifacts(open_storage(journal)._backend)
    assert len(listed) == 200 == len({a.trial for a in listed})
    for a in listed:
        data = Path(store.path(a.artifact_id)).read_bytes()
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (a.sha256, a.size)
        assert hashlib.sha256(data[32:]).digest() == data[:32]
    assert check(listed, store) == []


def test_a_writer_killed_mid_upload_leaves_no_artifact_and_check_names_its_file(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "s.journal"
    optuna.create_study(storage=open_storage(journal))
    store_path = tmp_path / "artifacts"
    started = tmp_path / "started"
    writer = ctx.Process(
        target=write_artifact_slowly, args=(str(store_path), "killed", str(started))
    )
    writer.start()
    deadline = time.monotonic() + 60
    while not started.exists() and writer.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert started.exists(), "the writer never began"
    os.kill(writer.pid, signal.SIGKILL)  # type: ignore[arg-type]
    writer.join()
    store = JournalArtifactStore(store_path)
    with pytest.raises(ArtifactNotFound):
        store.open_reader("killed")
    ids, sums, leftovers = store.listing()
    assert (ids, sums, len(leftovers)) == (set(), set(), 1)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "optuna_journal.cli",
            "artifacts",
            "check",
            str(journal),
            "--store",
            str(store_path),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert f"leftover: {leftovers[0]}" in out.stdout


@pytest.mark.parametrize(
    "bad", ["../x", "/etc/passwd", "a\0b", "", ".", "..", "a/b", ".hidden", "x.sha256"]
)
def test_ids_that_could_escape_the_store_are_refused(tmp_path: Path, bad: str) -> None:
    store = JournalArtifactStore(tmp_path / "artifacts")
    (tmp_path / "m.bin").write_bytes(b"m")
    with open(tmp_path / "m.bin", "rb") as f, pytest.raises(ValueError, match="rtifact id"):
        store.write(bad, f)
    for call in (store.open_reader, store.remove):
        with pytest.raises(ValueError, match="rtifact id"):
            call(bad)
    assert sorted(os.listdir(tmp_path)) == ["artifacts", "m.bin"]
    assert os.listdir(tmp_path / "artifacts") == []


def test_a_missing_or_corrupted_artifact_is_a_clear_error(tmp_path: Path) -> None:
    store = JournalArtifactStore(tmp_path / "artifacts")
    with pytest.raises(ArtifactNotFound, match="'nope'"):
        store.open_reader("nope")
    with pytest.raises(ArtifactNotFound):
        store.remove("nope")
    (tmp_path / "m.bin").write_bytes(b"0123456789")
    with open(tmp_path / "m.bin", "rb") as f:
        store.write("a1", f)
    with open(tmp_path / "m.bin", "rb") as f:
        store.write("a1", f)  # the same bytes again (a retried write): a no-op
    (tmp_path / "other.bin").write_bytes(b"other")
    with open(tmp_path / "other.bin", "rb") as f, pytest.raises(FileExistsError, match="a1"):
        store.write("a1", f)
    path = Path(store.path("a1"))
    path.write_bytes(b"0123456780")  # one byte changed
    with pytest.raises(ArtifactCorruptError, match=f"'a1' at {path}"):
        store.open_reader("a1")
    problems = check([], store)
    assert ("orphan", "a1") in [(p["problem"], p["artifact_id"]) for p in problems]


def test_an_unreachable_s3_endpoint_in_backoff_gives_up_with_a_clear_error(
    tmp_path: Path,
) -> None:
    port = _free_port()  # nothing listens there
    client = _s3_client(port, Config(retries={"max_attempts": 1}, connect_timeout=1))
    inner = Boto3ArtifactStore("artifacts", client=client)
    attempts = 0
    write = inner.write

    def counted(artifact_id: str, body: object) -> None:
        nonlocal attempts
        attempts += 1
        write(artifact_id, body)  # type: ignore[arg-type]

    inner.write = counted  # type: ignore[method-assign]
    (tmp_path / "m.bin").write_bytes(b"m")
    storage = open_storage(tmp_path / "s.journal")
    study = optuna.create_study(storage=storage)
    with pytest.raises(Exception, match=f"127.0.0.1:{port}") as raised:
        upload_artifact(
            artifact_store=_fast(inner), file_path=str(tmp_path / "m.bin"), study_or_trial=study
        )
    assert "Could not connect" in str(raised.value)
    assert attempts == 3  # max_retries=3 tries in all, then the last error
    assert get_all_artifact_meta(study) == []  # no metadata for bytes never stored


def test_history_and_time_travel_show_uploads_and_removals_in_order(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "s.journal")
    study = optuna.create_study(storage=storage, study_name="h")
    store = JournalArtifactStore(tmp_path / "artifacts")
    (tmp_path / "m.bin").write_bytes(b"model")
    trial = study.ask()
    first = upload_artifact(
        artifact_store=store, file_path=str(tmp_path / "m.bin"), study_or_trial=trial
    )
    uploaded_at = storage.position
    second = upload_artifact(
        artifact_store=store, file_path=str(tmp_path / "m.bin"), study_or_trial=trial
    )
    remove_artifact(trial, first, store)
    study.tell(trial, 1.0)

    kinds = [
        (type(e.record).__name__, getattr(e.record, "artifact_id", None))
        for e in storage.history(trial_id=trial._trial_id)
        if isinstance(e.record, (ArtifactUploaded, ArtifactRemoved))
    ]
    assert kinds == [
        ("ArtifactUploaded", first),
        ("ArtifactUploaded", second),
        ("ArtifactRemoved", first),
    ]
    then = storage.at(position=uploaded_at)
    assert [
        m.artifact_id for m in get_all_artifact_meta(then.get_trial(trial._trial_id), storage=then)
    ] == [first]
    now = [m.artifact_id for m in get_all_artifact_meta(study.trials[0], storage=storage)]
    assert now == [second]
    assert [a.artifact_id for a in artifacts(storage._backend, position=uploaded_at)] == [first]


def test_cli_lists_gets_and_checks_artifacts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "s.journal"
    storage = open_storage(journal)
    study = optuna.create_study(storage=storage, study_name="cli")
    store = JournalArtifactStore(tmp_path / "artifacts")
    data = os.urandom(5000)
    (tmp_path / "model.bin").write_bytes(data)

    def objective(trial: optuna.Trial) -> float:
        upload_artifact(
            artifact_store=store, file_path=str(tmp_path / "model.bin"), study_or_trial=trial
        )
        return float(trial.number)

    study.optimize(objective, n_trials=3)
    capsys.readouterr()
    assert (
        main(["artifacts", "list", str(journal), "--study", "cli", "--trial", "1", "--json"]) == 0
    )
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["trial"], row["filename"], row["size"]) == (1, "model.bin", 5000)
    assert row["sha256"] == hashlib.sha256(data).hexdigest()
    out = tmp_path / "got.bin"
    assert (
        main(
            [
                "artifacts",
                "get",
                str(journal),
                row["artifact_id"],
                "--store",
                str(store.base_path),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert out.read_bytes() == data
    assert main(["artifacts", "check", str(journal), "--store", str(store.base_path)]) == 0
    os.unlink(store.path(row["artifact_id"]))
    capsys.readouterr()
    assert main(["artifacts", "check", str(journal), "--store", str(store.base_path)]) == 1
    assert f"missing: {row['artifact_id']} (study 'cli', trial 1" in capsys.readouterr().out
    assert main(["artifacts", "list", str(journal), "--study", "nope"]) == 1
    for action in ("list", "get", "check"):
        with pytest.raises(SystemExit) as shown:
            main(["artifacts", action, "--help"])
        assert shown.value.code == 0
