from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
import os
from pathlib import Path
import pickle

import msgspec
import optuna
from optuna.distributions import FloatDistribution
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.study import StudyDirection
from optuna.trial import TrialState
import pytest

from optuna_journal import (
    CorruptLogError,
    FileBackend,
    JournalStorage,
    MemoryBackend,
    SchemaVersionError,
    UnknownRecordError,
    codec,
    open_storage,
)
from optuna_journal import records as r
from optuna_journal.backends import frames
from optuna_journal.backends.base import Cursor

MIN = [StudyDirection.MINIMIZE]


def _file_storage(tmp_path: Path) -> JournalStorage:
    return JournalStorage(FileBackend(tmp_path / "s.journal"))


def test_storage_writes_a_schema_header_once(tmp_path: Path) -> None:
    path = tmp_path / "s.journal"
    first, second = JournalStorage(FileBackend(path)), JournalStorage(FileBackend(path))
    assert first.position == second.position == 1
    data = path.read_bytes()
    header = codec.decode_header(frames.parse(data[8:]).payloads[0], str(path))
    assert header.schema_version == r.SCHEMA_VERSION
    assert header.library.startswith("optuna-journal")


def test_storage_unencodable_attr_names_the_key_and_appends_nothing(tmp_path: Path) -> None:
    storage = _file_storage(tmp_path)
    study_id = storage.create_new_study(MIN)
    trial_id = storage.create_new_trial(study_id)
    size, position = os.path.getsize(storage.backend.location), storage.position
    with pytest.raises(TypeError, match="'model'"):
        storage.set_trial_user_attr(trial_id, "model", object())
    with pytest.raises(TypeError, match="'fn'"):
        storage.set_study_system_attr(study_id, "fn", lambda: None)
    template = optuna.trial.create_trial(
        state=TrialState.COMPLETE, value=1.0, user_attrs={"ok": 1, "bad": [object()]}
    )
    with pytest.raises(TypeError, match="'bad'"):
        storage.create_new_trial(study_id, template)
    assert (os.path.getsize(storage.backend.location), storage.position) == (size, position)


def test_storage_rejects_nonsense_directions() -> None:
    storage = JournalStorage(MemoryBackend())
    with pytest.raises(ValueError, match="direction"):
        storage.create_new_study([])
    with pytest.raises(ValueError, match="MINIMIZE or MAXIMIZE"):
        storage.create_new_study([StudyDirection.NOT_SET])


def test_storage_conflict_error_goes_only_to_the_losing_writer() -> None:
    backend = MemoryBackend()
    a, b = JournalStorage(backend), JournalStorage(backend)
    study_id = a.create_new_study(MIN, "shared")
    with pytest.raises(DuplicatedStudyError):
        b.create_new_study(MIN, "shared")
    trial_id = a.create_new_trial(study_id)
    b.get_all_trials(study_id)  # b knows the trial is running
    a.set_trial_state_values(trial_id, TrialState.COMPLETE, [1.0])
    with pytest.raises(UpdateFinishedTrialError):
        b.set_trial_intermediate_value(trial_id, 0, 0.5)  # b's replica was behind: log order wins
    # a replays b's rejected records without raising, and both agree on the state.
    assert a.get_trial(trial_id) == b.get_trial(trial_id)
    assert a.get_trial(trial_id).intermediate_values == {}
    assert len(a.get_all_studies()) == len(b.get_all_studies()) == 1


def test_storage_second_claim_on_a_waiting_trial_returns_false() -> None:
    backend = MemoryBackend()
    a, b = JournalStorage(backend), JournalStorage(backend)
    study_id = a.create_new_study(MIN)
    trial_id = a.create_new_trial(study_id, optuna.trial.create_trial(state=TrialState.WAITING))
    assert a.set_trial_state_values(trial_id, TrialState.RUNNING) is True
    assert b.set_trial_state_values(trial_id, TrialState.RUNNING) is False


def test_storage_frozen_trials_are_never_mutated_afterwards() -> None:
    storage = JournalStorage(MemoryBackend())
    study_id = storage.create_new_study(MIN)
    trial_id = storage.create_new_trial(study_id)
    before = storage.get_trial(trial_id)
    listed = storage.get_all_trials(study_id, deepcopy=False)
    storage.set_trial_param(trial_id, "x", 0.5, FloatDistribution(0, 1))
    storage.set_trial_user_attr(trial_id, "u", 1)
    storage.set_trial_intermediate_value(trial_id, 3, 1.5)
    storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [2.0])
    for t in (before, listed[0]):
        assert (t.params, t.user_attrs, t.intermediate_values, t.state) == (
            {},
            {},
            {},
            TrialState.RUNNING,
        )
    after = storage.get_trial(trial_id)
    assert after.params == {"x": 0.5} and after.value == 2.0


def test_storage_get_all_trials_without_deepcopy_copies_no_trial() -> None:
    storage = JournalStorage(MemoryBackend())
    study_id = storage.create_new_study(MIN)
    for _ in range(3):
        storage.create_new_trial(study_id)
    once = storage.get_all_trials(study_id, deepcopy=False)
    twice = storage.get_all_trials(study_id, deepcopy=False)
    assert all(a is b for a, b in zip(once, twice, strict=False))
    assert storage.get_trial(once[1]._trial_id) is once[1]
    copied = storage.get_all_trials(study_id)
    assert copied == once and all(a is not b for a, b in zip(copied, once, strict=False))


def test_storage_pickles_as_its_location_and_replays(tmp_path: Path) -> None:
    storage = _file_storage(tmp_path)
    study_id = storage.create_new_study(MIN, "pickled")
    for i in range(50):
        storage.set_study_user_attr(study_id, f"k{i}", "v" * 100)
    blob = pickle.dumps(storage)
    assert len(blob) < 400 and b"v" * 100 not in blob
    restored = pickle.loads(blob)
    assert restored.get_study_user_attrs(study_id) == storage.get_study_user_attrs(study_id)


@pytest.mark.parametrize("durability, per_trial", [("append", 8), ("trial", 2)])
def test_storage_durability_decides_which_writes_are_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durability: str, per_trial: int
) -> None:
    """ "trial": one fsync where a trial starts and one where it ends, none in between."""
    storage = JournalStorage(
        FileBackend(tmp_path / "s.journal"), snapshot_every=0, durability=durability
    )
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(0))
    fsynced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsynced.append(fd), real(fd))[1])

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        trial.suggest_int("n", 0, 3)
        for step in range(3):
            trial.report(x, step)
        trial.set_user_attr("a", 1)
        return x

    study.optimize(objective, n_trials=3)
    assert len(fsynced) == 3 * per_trial
    replayed = JournalStorage(FileBackend(tmp_path / "s.journal"))
    assert replayed.get_all_trials(0) == storage.get_all_trials(0)
    assert pickle.loads(pickle.dumps(storage))._durability == durability
    with pytest.raises(ValueError, match="durability must be"):
        JournalStorage(MemoryBackend(), durability="never")


def test_storage_snapshot_never_gets_ahead_of_unsynced_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.journal"
    storage = JournalStorage(FileBackend(path), snapshot_every=0, durability="trial")
    study_id = storage.create_new_study(MIN)
    trial_id = storage.create_new_trial(study_id)
    fsynced: list[str] = []
    real = os.fsync
    monkeypatch.setattr(
        os, "fsync", lambda fd: (fsynced.append(os.readlink(f"/proc/self/fd/{fd}")), real(fd))[1]
    )
    storage.set_trial_user_attr(trial_id, "a", 1)  # not synced on its own
    assert fsynced == []
    storage.snapshot()
    assert fsynced[0] == str(path)  # the log, before the snapshot is written
    assert fsynced[1].startswith(f"{path}.snapshot.") and fsynced[2] == str(tmp_path)


def test_storage_open_storage_opens_a_path(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "s.journal")
    study = optuna.create_study(storage=storage, study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    again = optuna.load_study(study_name="s", storage=open_storage(str(tmp_path / "s.journal")))
    assert [t.params for t in again.trials] == [t.params for t in study.trials]
    assert isinstance(open_storage("memory:").backend, MemoryBackend)


def _append_raw(path: Path, payload: bytes) -> None:
    FileBackend(path).append([payload])


def test_storage_refuses_a_log_of_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "s.journal"
    header = r.JournalHeader(
        schema_version=r.SCHEMA_VERSION + 1,
        library="optuna-journal 9.9",
        writer="w",
        at=datetime.now(timezone.utc),
    )
    FileBackend(path).append_head(codec.encode(header))
    before = path.read_bytes()
    with pytest.raises(SchemaVersionError, match="Upgrade optuna-journal"):
        JournalStorage(FileBackend(path))
    assert path.read_bytes() == before


def test_storage_names_an_unknown_record_kind(tmp_path: Path) -> None:
    storage = _file_storage(tmp_path)
    storage.create_new_study(MIN)
    _append_raw(
        tmp_path / "s.journal",
        msgspec.msgpack.encode(["study.renamed", b"r" * 16, "w", datetime.now(timezone.utc)]),
    )
    with pytest.raises(UnknownRecordError, match="record 2 is of kind 'study.renamed'"):
        _file_storage(tmp_path)


def test_storage_refuses_to_open_a_log_corrupt_in_the_middle(tmp_path: Path) -> None:
    storage = _file_storage(tmp_path)
    study_id = storage.create_new_study(MIN)
    for i in range(5):
        storage.set_study_user_attr(study_id, "k", i)
    path = tmp_path / "s.journal"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptLogError, match="byte offset"):
        _file_storage(tmp_path)


class _RepeatingBackend(MemoryBackend):
    """Lands every append twice, as a retry after a lost reply does."""

    def append(
        self, payloads: Sequence[bytes], sync: bool = True, after: Cursor | None = None
    ) -> None:
        super().append(payloads, sync, after)
        super().append(payloads, sync, after)


def test_storage_repeated_appends_take_effect_once() -> None:
    storage = JournalStorage(_RepeatingBackend())
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(0))

    def objective(trial: optuna.Trial) -> float:
        trial.report(1.0, 0)
        return trial.suggest_float("x", 0, 1)

    study.optimize(objective, n_trials=5)
    assert [t.number for t in study.trials] == list(range(5))
    assert all(t.state == TrialState.COMPLETE and len(t.params) == 1 for t in study.trials)
    other = JournalStorage(storage.backend)  # a replica replaying the doubled log agrees
    assert other.get_all_trials(0) == storage.get_all_trials(0)


@pytest.mark.filterwarnings("ignore:The distribution is specified by")
def test_storage_keeps_a_stepped_distribution_that_fitting_again_would_move(
    tmp_path: Path,
) -> None:
    # Optuna fits high to the step grid in decimal: 0.9477... becomes 0.4477..., and fitting
    # that again would give high == low. Replay, from the log and from a snapshot, must give
    # back the distribution the trial had.
    dist = FloatDistribution(-0.05225887829293718, 0.9477411217070628, step=0.5)
    assert dist.high == 0.4477411217070628
    storage = JournalStorage(FileBackend(tmp_path / "j"), snapshot_every=0)
    study_id = storage.create_new_study(MIN, "s")
    trial_id = storage.create_new_trial(study_id)
    storage.set_trial_param(trial_id, "x", -0.05225887829293718, dist)
    replayed = JournalStorage(FileBackend(tmp_path / "j"), snapshot_every=0)
    replayed.snapshot()
    restored = JournalStorage(FileBackend(tmp_path / "j"))
    for reader in (replayed, restored):
        assert reader.get_trial(trial_id).distributions == {"x": dist}
