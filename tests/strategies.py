"""Hypothesis strategies for records and for whole logs, in one place."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from hypothesis import strategies as st
import msgspec

from optuna_journal import records as r

floats = st.floats(allow_nan=True, allow_infinity=True)
finite = st.floats(allow_nan=False, allow_infinity=False, width=32)
moments = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(timezone.utc)
)
keys = st.text(max_size=8)
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | floats | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=6,
)
choices = st.none() | st.booleans() | st.integers(-100, 100) | finite | st.text(max_size=4)


@st.composite
def _float_dist(draw: st.DrawFn) -> r.FloatDist:
    if draw(st.booleans()):
        low = draw(st.floats(1e-3, 10))
        return r.FloatDist(low, low + draw(st.floats(0, 10)), True, None)
    low = draw(st.floats(-10, 10))
    if draw(st.booleans()):
        return r.FloatDist(low, low + 0.5 * draw(st.integers(0, 4)), False, 0.5)
    return r.FloatDist(low, low + draw(st.floats(0, 10)), False, None)


@st.composite
def _int_dist(draw: st.DrawFn) -> r.IntDist:
    if draw(st.booleans()):
        low = draw(st.integers(1, 10))
        return r.IntDist(low, low + draw(st.integers(0, 10)), True, 1)
    low, step = draw(st.integers(-10, 10)), draw(st.integers(1, 3))
    return r.IntDist(low, low + step * draw(st.integers(0, 4)), False, step)


distributions = st.one_of(
    _float_dist(),
    _int_dist(),
    st.builds(r.CategoricalDist, st.lists(choices, min_size=1, max_size=4).map(tuple)),
)
ids = st.integers(0, 5)


def _record(kind: type[r.Record], **fields: Any) -> st.SearchStrategy[r.Record]:
    return st.builds(
        kind, writer=st.text(max_size=12), rid=st.integers(1, 2**62), at=moments, **fields
    )


states = st.sampled_from(list(r.StateCode))
values = st.none() | st.lists(floats, min_size=1, max_size=3).map(tuple)

record_strategies: dict[type[r.Record], st.SearchStrategy[r.Record]] = {
    r.StudyCreated: _record(
        r.StudyCreated,
        name=st.sampled_from(["a", "b", "c"]),
        directions=st.lists(st.sampled_from(list(r.Direction)), min_size=1, max_size=2).map(tuple),
    ),
    r.StudyDeleted: _record(r.StudyDeleted, study_id=ids),
    r.StudyUserAttrSet: _record(r.StudyUserAttrSet, study_id=ids, key=keys, value=json_values),
    r.StudySystemAttrSet: _record(r.StudySystemAttrSet, study_id=ids, key=keys, value=json_values),
    r.TrialCreated: _record(
        r.TrialCreated,
        study_id=ids,
        state=states,
        values=values,
        datetime_start=st.none() | moments,
        datetime_complete=st.none() | moments,
        params=st.dictionaries(
            keys, st.builds(r.Param, st.integers(0, 0).map(float), distributions), max_size=3
        ),
        user_attrs=st.dictionaries(keys, json_values, max_size=3),
        system_attrs=st.dictionaries(keys, json_values, max_size=3),
        intermediate_values=st.dictionaries(st.integers(0, 100), floats, max_size=3),
    ),
    r.TrialParamSet: _record(
        r.TrialParamSet,
        trial_id=ids,
        name=st.sampled_from(["x", "y"]),
        internal=st.integers(0, 0).map(float),
        distribution=distributions,
    ),
    r.TrialStateSet: _record(r.TrialStateSet, trial_id=ids, state=states, values=values),
    r.TrialIntermediateValueSet: _record(
        r.TrialIntermediateValueSet, trial_id=ids, step=st.integers(0, 10), value=floats
    ),
    r.TrialUserAttrSet: _record(r.TrialUserAttrSet, trial_id=ids, key=keys, value=json_values),
    r.TrialSystemAttrSet: _record(r.TrialSystemAttrSet, trial_id=ids, key=keys, value=json_values),
    r.TrialHeartbeat: _record(r.TrialHeartbeat, trial_id=ids),
    r.LogCompacted: _record(
        r.LogCompacted,
        last_rid=st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(0, 30)),
        folded=st.integers(0, 100),
        archive=st.none() | st.text(max_size=8),
    ),
    r.ArtifactUploaded: _record(
        r.ArtifactUploaded,
        study_id=st.none() | ids,
        trial_id=st.none() | ids,
        artifact_id=st.sampled_from(["a1", "a2"]),
        filename=st.text(max_size=8),
        mimetype=st.sampled_from(["text/plain", "application/octet-stream"]),
        encoding=st.none() | st.just("gzip"),
        size=st.none() | st.integers(0, 10**9),
        sha256=st.none() | st.just("0" * 64),
    ),
    r.ArtifactRemoved: _record(
        r.ArtifactRemoved,
        study_id=st.none() | ids,
        trial_id=st.none() | ids,
        artifact_id=st.sampled_from(["a1", "a2"]),
    ),
}
assert set(record_strategies) == set(r.RECORD_TYPES), "every record kind needs a strategy"

any_record = st.one_of(*record_strategies.values())


@st.composite
def logs(draw: st.DrawFn, max_size: int = 60) -> list[r.Record]:
    """Records as writers append them: three writers counting their records, with repeats
    (an append retried after a lost reply) now and then."""
    log: list[r.Record] = []
    last: dict[str, int] = {}
    for record in draw(st.lists(any_record, max_size=max_size)):
        writer = draw(st.sampled_from(["a", "b", "c"]))
        repeat = bool(log) and draw(st.integers(0, 9)) == 0
        if repeat:
            log.append(draw(st.sampled_from(log[-3:])))
            continue
        last[writer] = last.get(writer, 0) + 1
        log.append(msgspec.structs.replace(record, writer=writer, rid=last[writer]))
    return log
