from __future__ import annotations

from datetime import datetime, timezone
import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.distributions import FloatDistribution

from optuna_journal import records as r
from optuna_journal.replay import Reason, Rejected, State, Verdict, apply
from optuna_journal.replay.apply import apply_all
from tests.strategies import logs

AT = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _dump(state: State) -> str:
    """Everything observable in a state, as text (NaN compares equal as text)."""
    studies: list[Any] = []
    for sid, study in state.studies.items():
        studies.append(
            (
                sid,
                study.name,
                study.directions,
                study.user_attrs,
                study.system_attrs,
                state.frozen_trials(sid),
                study.counts,
                study.best and study.best.trial_id,
                study.first_distribution,
                vars(study.freeze()),
            )
        )
    return repr(
        (
            state.position,
            state.next_study_id,
            state.next_trial_id,
            state.study_ids,
            sorted(state.last_rid.items()),
            sorted(state.trials),
            studies,
        )
    )


def _replay(records: list[r.Record], state: State | None = None) -> tuple[State, list[Verdict]]:
    state = state or State()
    return state, [apply(state, rec) for rec in records]  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(logs(), st.data())
def test_replay_in_two_steps_equals_replay_in_one(
    log: list[r.Record], data: st.DataObject
) -> None:
    whole, verdicts = _replay(log)
    cut = data.draw(st.integers(0, len(log)))
    state, first = _replay(log[:cut])
    if data.draw(st.booleans()):
        _dump(state)  # a read in between freezes trials: copy-on-write must not change anything
    state, rest = _replay(log[cut:], state)
    assert repr(first + rest) == repr(verdicts)
    assert _dump(state) == _dump(whole)


@settings(max_examples=200, deadline=None)
@given(logs())
def test_apply_all_equals_applying_one_by_one(log: list[r.Record]) -> None:
    whole, _ = _replay(log)
    state = State()
    apply_all(state, log)  # type: ignore[arg-type]
    assert _dump(state) == _dump(whole)


def test_every_record_kind_has_a_case() -> None:
    from typing import get_args

    from optuna_journal.replay.apply import _CASES

    assert set(_CASES) == set(get_args(r.AnyRecord))


_rids = itertools.count(1)


def _rec(kind: type[r.Record], writer: str = "w", **fields: Any) -> Any:
    return kind(writer=writer, rid=next(_rids), at=AT, **fields)


def test_replay_first_claim_on_a_waiting_trial_wins() -> None:
    state, verdicts = _replay(
        [
            _rec(r.StudyCreated, name="s", directions=(r.Direction.MINIMIZE,)),
            _rec(r.TrialCreated, study_id=0, state=r.StateCode.WAITING),
            _rec(r.TrialStateSet, writer="a", trial_id=0, state=r.StateCode.RUNNING),
            _rec(r.TrialStateSet, writer="b", trial_id=0, state=r.StateCode.RUNNING),
        ]
    )
    assert verdicts[2:] == [True, False]
    assert state.trials[0].datetime_start is not None


def test_replay_duplicate_name_and_finished_trial_are_rejected_without_effect() -> None:
    state, verdicts = _replay(
        [
            _rec(r.StudyCreated, name="s", directions=(r.Direction.MINIMIZE,)),
            _rec(r.StudyCreated, writer="b", name="s", directions=(r.Direction.MAXIMIZE,)),
            _rec(r.TrialCreated, study_id=0),
            _rec(r.TrialStateSet, trial_id=0, state=r.StateCode.COMPLETE, values=(1.0,)),
            _rec(r.TrialIntermediateValueSet, writer="b", trial_id=0, step=0, value=2.0),
            _rec(r.TrialStateSet, writer="b", trial_id=0, state=r.StateCode.FAIL),
        ]
    )
    assert verdicts[0] == 0 and verdicts[2] == 0 and verdicts[3] is True
    for rejected, reason in zip(
        [verdicts[1], verdicts[4], verdicts[5]],
        [Reason.DUPLICATE_STUDY, Reason.TRIAL_FINISHED, Reason.TRIAL_FINISHED],
        strict=False,
    ):
        assert isinstance(rejected, Rejected) and rejected.reason is reason
    assert len(state.studies) == 1 and state.studies[0].directions[0].name == "MINIMIZE"
    assert state.trials[0].state.name == "COMPLETE" and state.trials[0].intermediate_values == {}


def test_replay_params_keep_their_choice_types_and_every_incompatible_one_is_rejected() -> None:
    ints, bools = r.CategoricalDist((1, 2)), r.CategoricalDist((True, 2))  # equal as tuples
    wide = r.FloatDist(0.0, 1.0)
    records = [_rec(r.StudyCreated, name="s", directions=(r.Direction.MINIMIZE,))]
    for trial_id in range(3):
        records.append(_rec(r.TrialCreated, writer=str(trial_id), study_id=0))
    for trial_id, dist in enumerate([ints, bools, ints]):
        records.append(
            _rec(r.TrialParamSet, trial_id=trial_id, name="c", internal=0.0, distribution=dist)
        )
    for trial_id in range(3):  # "c" is categorical in this study: a float "c" never fits
        records.append(
            _rec(r.TrialParamSet, trial_id=trial_id, name="c", internal=0.5, distribution=wide)
        )
    state, verdicts = _replay(records)
    assert [type(state.trials[i].params["c"]) for i in range(3)] == [int, bool, int]
    assert state.trials[0].dist_set == state.trials[2].dist_set != state.trials[1].dist_set
    for verdict in verdicts[-3:]:
        assert isinstance(verdict, Rejected) and verdict.reason is Reason.INCOMPATIBLE_DISTRIBUTION


def test_replay_deleted_study_frees_its_name_but_never_its_ids() -> None:
    state, verdicts = _replay(
        [
            _rec(r.StudyCreated, name="s", directions=(r.Direction.MINIMIZE,)),
            _rec(r.TrialCreated, study_id=0),
            _rec(r.StudyDeleted, study_id=0),
            _rec(r.StudyCreated, name="s", directions=(r.Direction.MINIMIZE,)),
            _rec(r.TrialCreated, study_id=1),
            _rec(r.TrialUserAttrSet, trial_id=0, key="k", value=1),
        ]
    )
    assert verdicts[:5] == [0, 0, None, 1, 1]
    assert isinstance(verdicts[5], Rejected) and verdicts[5].reason is Reason.NO_TRIAL
    assert list(state.trials) == [1] and state.study_ids == {"s": 1}


def test_replay_keeps_the_best_trial_without_scanning() -> None:
    records = [_rec(r.StudyCreated, name="s", directions=(r.Direction.MAXIMIZE,))]
    for i, v in enumerate([1.0, 5.0, 5.0, float("-inf"), 3.0]):
        records.append(_rec(r.TrialCreated, writer=str(i), study_id=0))
        records.append(
            _rec(
                r.TrialStateSet, writer=str(i), trial_id=i, state=r.StateCode.COMPLETE, values=(v,)
            )
        )
    state, _ = _replay(records)
    best = state.studies[0].best
    assert best is not None and best.number == 1  # ties go to the lower number


def test_replay_best_trial_on_a_tie_is_the_lower_number_whichever_finished_first() -> None:
    """As Optuna's scan of the complete trials finds it (its JournalStorage and RDBStorage)."""
    records = [_rec(r.StudyCreated, name="s", directions=(r.Direction.MINIMIZE,))]
    records += [_rec(r.TrialCreated, study_id=0) for _ in range(2)]
    for trial_id in (1, 0):  # trial 1 finishes first, then trial 0 ties it
        records.append(
            _rec(r.TrialStateSet, trial_id=trial_id, state=r.StateCode.COMPLETE, values=(2.0,))
        )
    state, _ = _replay(records)
    best = state.studies[0].best
    assert best is not None and best.number == 0


def test_replay_applies_a_repeated_record_once() -> None:
    created = _rec(r.TrialCreated, writer="a", study_id=0)
    value = _rec(r.TrialIntermediateValueSet, writer="a", trial_id=0, step=0, value=1.0)
    state, verdicts = _replay(
        [
            _rec(r.StudyCreated, name="s", directions=(r.Direction.MINIMIZE,)),
            created,
            _rec(r.TrialCreated, writer="b", study_id=0),
            created,  # retried after its reply was lost: other writers' records may come between
            value,
            value,
        ]
    )
    assert verdicts[1:3] == [0, 1] and verdicts[4] is None
    for repeat in (verdicts[3], verdicts[5]):
        assert isinstance(repeat, Rejected) and repeat.reason is Reason.REPEATED
    assert len(state.studies[0].trials) == 2 and state.position == 6


def changing_bounds_log(n: int) -> list[Any]:
    """Trial 0 runs throughout; trials 1..n each set 5 params, the first with bounds of its
    own, and complete; then trial 0 sets a second param."""
    records = [
        _rec(r.StudyCreated, name="s", directions=(r.Direction.MINIMIZE,)),
        _rec(r.TrialCreated, study_id=0),
        _rec(r.TrialParamSet, trial_id=0, name="a", internal=0.5, distribution=r.FloatDist(0, 1)),
    ]
    for t in range(1, n + 1):
        records.append(_rec(r.TrialCreated, study_id=0))
        for i, name in enumerate("abcde"):
            dist = r.FloatDist(0.0, 1.0 + (t if i == 0 else 0))
            records.append(
                _rec(r.TrialParamSet, trial_id=t, name=name, internal=0.5, distribution=dist)
            )
        records.append(
            _rec(r.TrialStateSet, trial_id=t, state=r.StateCode.COMPLETE, values=(float(t),))
        )
    records.append(
        _rec(r.TrialParamSet, trial_id=0, name="b", internal=0.5, distribution=r.FloatDist(0, 1))
    )
    return records


def test_replay_drops_the_distribution_sets_trials_have_passed_through() -> None:
    # Every trial's first param differs, so each of its 5 steps makes a set: 7,500 in all,
    # where the trials keep 1,501. The ones passed through go; no trial's distributions change.
    n = 1500
    state, verdicts = _replay(changing_bounds_log(n))
    assert not any(isinstance(v, Rejected) for v in verdicts)
    assert len(state.dist_sets) < 2 * n
    trials = state.frozen_trials(0)
    assert trials[0].distributions == {
        "a": FloatDistribution(0, 1),
        "b": FloatDistribution(0, 1),
    }
    for t in range(1, n + 1):
        expected = {name: FloatDistribution(0, 1) for name in "bcde"}
        assert trials[t].distributions == {"a": FloatDistribution(0, 1 + t), **expected}
        assert list(trials[t].distributions) == list("abcde")
