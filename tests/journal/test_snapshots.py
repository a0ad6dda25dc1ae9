"""Snapshots through JournalStorage: taken automatically, loaded on open, ignored when unsound."""

from __future__ import annotations

from collections.abc import Iterator
import os
from pathlib import Path
import uuid

import optuna
import pytest

from optuna_journal import FileBackend, JournalStorage
from optuna_journal.backends import Batch, Cursor
from optuna_journal.backends.redis import RedisBackend
from optuna_journal.redis_server import RedisServer


class _Counting(FileBackend):
    """A file backend that counts the records it reads."""

    read_records = 0

    def read(self, after: Cursor | None = None) -> Iterator[Batch]:
        for batch in super().read(after):
            self.read_records += len(batch.payloads)
            yield batch


def _optimize(storage: JournalStorage, n_trials: int, name: str = "s") -> optuna.Study:
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        load_if_exists=True,
        sampler=optuna.samplers.RandomSampler(0),
    )

    def objective(trial: optuna.Trial) -> float:
        trial.report(1.0, 0)
        trial.suggest_categorical("c", [1, True, "1"])  # equal as values, distinct as choices
        return trial.suggest_float("x", 0, 1)

    study.optimize(objective, n_trials=n_trials)
    return study


def _trials(storage: JournalStorage) -> list[optuna.trial.FrozenTrial]:
    return storage.get_all_trials(storage.get_study_id_from_name("s"))


def test_snapshot_is_taken_automatically_and_a_new_process_replays_only_the_tail(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.journal"
    writer = JournalStorage(FileBackend(path), snapshot_every=50)
    _optimize(writer, 30)
    assert os.path.exists(f"{path}.snapshot")
    assert not list(tmp_path.glob("*.tmp"))

    counting = _Counting(path)
    reader = JournalStorage(counting)
    assert reader.position == writer.position
    assert counting.read_records < 50  # the tail after the newest snapshot, no more
    assert _trials(reader) == _trials(writer)
    full = JournalStorage(FileBackend(path), snapshot_every=0)
    os.unlink(f"{path}.snapshot")
    assert _trials(JournalStorage(FileBackend(path))) == _trials(full) == _trials(reader)


def _take_snapshot(path: Path, n_trials: int) -> JournalStorage:
    storage = JournalStorage(FileBackend(path), snapshot_every=0)
    _optimize(storage, n_trials)
    storage.snapshot()
    return storage


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[: len(b) // 2], id="partially-written"),
        pytest.param(lambda b: b[:100] + bytes([b[100] ^ 0x10]) + b[101:], id="flipped-bit"),
        pytest.param(lambda b: b"garbage", id="garbage"),
    ],
)
def test_unsound_snapshot_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: object
) -> None:
    path = tmp_path / "s.journal"
    expected = _trials(_take_snapshot(path, 10))
    snap = Path(f"{path}.snapshot")
    snap.write_bytes(damage(snap.read_bytes()))  # type: ignore[operator]
    reopened = JournalStorage(FileBackend(path))
    assert "ignoring its snapshot" in caplog.text
    assert _trials(reopened) == expected


def test_snapshot_ahead_of_the_log_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.journal"
    storage = JournalStorage(FileBackend(path), snapshot_every=0)
    _optimize(storage, 5)
    backup = path.read_bytes()
    expected = _trials(storage)
    _optimize(storage, 5)
    storage.snapshot()
    path.write_bytes(backup)  # the log restored from an older backup, the snapshot left as is
    reopened = JournalStorage(FileBackend(path))
    assert "ahead of the log" in caplog.text
    assert _trials(reopened) == expected


def test_snapshot_of_another_log_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _take_snapshot(tmp_path / "a.journal", 5)
    expected = _trials(_take_snapshot(tmp_path / "b.journal", 3))
    os.replace(tmp_path / "a.journal.snapshot", tmp_path / "b.journal.snapshot")
    reopened = JournalStorage(FileBackend(tmp_path / "b.journal"))
    assert "another log" in caplog.text
    assert _trials(reopened) == expected


def test_snapshot_on_redis_is_a_key_beside_the_stream(redis_server: RedisServer) -> None:
    name = uuid.uuid4().hex
    writer = JournalStorage(RedisBackend(redis_server.url, name=name), snapshot_every=40)
    _optimize(writer, 20)
    backend = RedisBackend(redis_server.url, name=name)
    assert backend.load_snapshot() is not None
    reader = JournalStorage(backend)
    assert _trials(reader) == _trials(writer)
