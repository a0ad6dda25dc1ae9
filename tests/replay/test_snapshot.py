from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from optuna_journal import records as r
from optuna_journal.backends import Cursor
from optuna_journal.replay import State, apply, snapshot
from tests.replay.test_apply import _dump, _replay, changing_bounds_log
from tests.strategies import logs

HEAD = b"record zero"


@settings(max_examples=300, deadline=None)
@given(logs(), st.data())
def test_snapshot_plus_tail_equals_full_replay(log: list[r.Record], data: st.DataObject) -> None:
    full = State()
    full_verdicts = [apply(full, rec) for rec in log]  # type: ignore[arg-type]
    cut = data.draw(st.integers(0, len(log)))
    state = State()
    for rec in log[:cut]:
        apply(state, rec)  # type: ignore[arg-type]
    blob = snapshot.encode(state, HEAD, Cursor(cut, cut))
    restored, cursor = snapshot.decode(blob, HEAD)
    assert cursor == Cursor(cut, cut)
    rest = [apply(restored, rec) for rec in log[cut:]]  # type: ignore[arg-type]
    assert repr(rest) == repr(full_verdicts[cut:])
    assert _dump(restored) == _dump(full)


def test_snapshot_after_distribution_sets_were_dropped_plus_tail_equals_full_replay() -> None:
    # The snapshot's sets are renumbered, and the restored state drops sets on its own
    # schedule: neither may change what the trials show.
    log = changing_bounds_log(1500)
    full, _ = _replay(log)
    cut = len(log) * 2 // 3
    state, _ = _replay(log[:cut])
    restored, _ = snapshot.decode(snapshot.encode(state, HEAD, Cursor(cut, cut)), HEAD)
    _replay(log[cut:], restored)
    assert _dump(restored) == _dump(full)


def _state_with_a_trial() -> State:
    state = State()
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    apply(state, r.StudyCreated(writer="w", rid=1, at=at, name="s", directions=(r.Direction(1),)))
    apply(state, r.TrialCreated(writer="w", rid=2, at=at, study_id=0))
    return state


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda b: b[:-1], "truncated"),
        (lambda b: b[: len(b) // 2], "truncated"),
        (lambda b: b[:20] + bytes([b[20] ^ 1]) + b[21:], "checksum"),
        (lambda b: b"x" + b[1:], "magic"),
        (lambda b: b + b"\0", "padded"),
    ],
)
def test_snapshot_damaged_is_refused(damage: object, reason: str) -> None:
    blob = snapshot.encode(_state_with_a_trial(), HEAD, Cursor(3, 3))
    with pytest.raises(snapshot.SnapshotError, match=reason):
        snapshot.decode(damage(blob), HEAD)  # type: ignore[operator]


def test_snapshot_of_another_log_is_refused() -> None:
    blob = snapshot.encode(_state_with_a_trial(), HEAD, Cursor(3, 3))
    with pytest.raises(snapshot.SnapshotError, match="another log"):
        snapshot.decode(blob, b"another record zero")


def test_snapshot_schedule_takes_one_per_step_and_bounds_the_tail() -> None:
    every = 100
    due = [p for p in range(1, 200_001) if snapshot.is_due(p, every)]
    assert due[:3] == [100, 200, 300]
    gaps = [b - a for a, b in zip(due, due[1:], strict=False)]
    assert all(gap <= max(every, a // 10 + every) for a, gap in zip(due, gaps, strict=False))
    assert len(due) < 200_000 // every  # rarer as the log grows
    assert not any(snapshot.is_due(p, 0) for p in range(1, 1000))
