"""The pure fold: ``apply(state, record) -> verdict``.

No I/O, no clock, no randomness: every replica that applies the same records in the same order
reaches the same state and the same verdicts. A record that conflicts with what came before it
(a duplicate study name, a write to a finished trial, a second claim on a WAITING trial)
changes nothing and yields a :class:`Rejected` verdict (or ``False`` for a lost claim); the
storage raises it only to the writer whose record it was.

Every case costs O(1) amortised (plus the size of the record): no case scans a study.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
import enum
import json
from sys import intern
from typing import Any, NamedTuple

from optuna.distributions import check_distribution_compatibility
from optuna.study import StudyDirection

from optuna_journal.distributions import distribution_key, from_record
from optuna_journal.records import (
    AnyRecord,
    ArtifactRemoved,
    ArtifactUploaded,
    LogCompacted,
    StateCode,
    StudyCreated,
    StudyDeleted,
    StudySystemAttrSet,
    StudyUserAttrSet,
    TrialCreated,
    TrialHeartbeat,
    TrialIntermediateValueSet,
    TrialParamSet,
    TrialStateSet,
    TrialSystemAttrSet,
    TrialUserAttrSet,
)
from optuna_journal.replay.state import FINISHED, State, StudyRow, TrialRow


class Reason(enum.Enum):
    REPEATED = "a repeat of a record already applied"
    NO_STUDY = "no such study"
    NO_TRIAL = "no such trial"
    DUPLICATE_STUDY = "duplicate study name"
    TRIAL_FINISHED = "trial already finished"
    INCOMPATIBLE_DISTRIBUTION = "incompatible distribution"
    NO_ARTIFACT = "no such artifact"


class Rejected(NamedTuple):
    """A record that changed nothing, and why."""

    reason: Reason
    message: str


Verdict = int | bool | None | Rejected
"""A new id (study or trial created), a claim's outcome (state set), None, or a rejection."""

DIRECTIONS = {d.value: d for d in StudyDirection}


def local_time(at: datetime) -> datetime:
    """Optuna's datetimes are naive local time; records hold aware UTC ones.

    ``fromtimestamp`` is exact to the microsecond for any date before 2242 and three times
    faster than ``astimezone().replace(tzinfo=None)``.
    """
    return datetime.fromtimestamp(at.timestamp())


def apply(state: State, record: AnyRecord) -> Verdict:
    """Apply one record to ``state`` (in place) and return its verdict."""
    state.position += 1
    last_rid, writer = state.last_rid, record.writer
    if record.rid <= last_rid.get(writer, 0):  # an append retried after its reply was lost
        return Rejected(Reason.REPEATED, f"{writer} record {record.rid} is a repeat")
    last_rid[writer] = record.rid
    return _CASES[type(record)](state, record)


def apply_all(state: State, records: Sequence[AnyRecord]) -> None:
    """Apply records whose verdicts no one waits for: :func:`apply` with the loop inlined,
    as a cold open applies hundreds of thousands.

    A writer's records mostly come in runs: within one, its last ``rid`` is kept in a local
    and ``last_rid`` (a lookup by a string each record would hash afresh) is written once.
    """
    last_rid = state.last_rid
    cases = _CASES
    writer: str | None = None  # the writer of the current run
    rid = 0  # the last rid applied for it
    try:
        for record in records:
            if record.writer != writer:
                if writer is not None:
                    last_rid[writer] = rid
                writer = record.writer
                rid = last_rid.get(writer, 0)
            if record.rid <= rid:
                continue
            rid = record.rid
            if type(record) is LogCompacted:  # it raises writers' rids, maybe this one's
                last_rid[writer] = rid
                _log_compacted(state, record)
                rid = last_rid[writer]
            else:
                cases[type(record)](state, record)
    finally:
        if writer is not None:
            last_rid[writer] = rid
    state.position += len(records)


def _intermediate_value_set(state: State, record: TrialIntermediateValueSet) -> Verdict:
    row = state.trials.get(record.trial_id)
    if row is None or row.state in FINISHED:
        return _not_updatable(record.trial_id, row)
    row.intermediate_values[record.step] = record.value
    state.studies[row.study_id].stale.add(row.number)
    return None


def _trial_attr_set(state: State, record: TrialUserAttrSet | TrialSystemAttrSet) -> Verdict:
    row = state.trials.get(record.trial_id)
    if row is None or row.state in FINISHED:
        return _not_updatable(record.trial_id, row)
    attrs = row.user_attrs if type(record) is TrialUserAttrSet else row.system_attrs
    attrs[intern(record.key)] = record.value
    state.studies[row.study_id].stale.add(row.number)
    return None


def _study_attr_set(state: State, record: StudyUserAttrSet | StudySystemAttrSet) -> Verdict:
    study = state.studies.get(record.study_id)
    if study is None:
        return _no_study(record.study_id)
    attrs = study.user_attrs if type(record) is StudyUserAttrSet else study.system_attrs
    attrs[record.key] = record.value
    study.frozen_study = None
    return None


ARTIFACTS_ATTR_PREFIX = "artifacts:"
"""Optuna keeps an artifact's metadata in the system attr of this prefix and its id."""


def artifact_meta(artifact_id: str, filename: str, mimetype: str, encoding: str | None) -> str:
    """The attr value Optuna's ``upload_artifact`` writes for this artifact, byte for byte."""
    meta = {"artifact_id": artifact_id, "filename": filename, "mimetype": mimetype}
    return json.dumps({**meta, "encoding": encoding})


def _artifact_attrs(
    state: State, record: ArtifactUploaded | ArtifactRemoved
) -> dict[str, Any] | Rejected:
    """The system attrs of the artifact's trial or study, marked changed."""
    if record.trial_id is not None:
        row = state.trials.get(record.trial_id)
        if row is None or row.state in FINISHED:
            return _not_updatable(record.trial_id, row)
        state.studies[row.study_id].stale.add(row.number)
        return row.system_attrs
    study = None if record.study_id is None else state.studies.get(record.study_id)
    if study is None:
        return _no_study(record.study_id)
    study.frozen_study = None
    return study.system_attrs


def _artifact_uploaded(state: State, record: ArtifactUploaded) -> Verdict:
    attrs = _artifact_attrs(state, record)
    if isinstance(attrs, Rejected):
        return attrs
    attrs[ARTIFACTS_ATTR_PREFIX + record.artifact_id] = artifact_meta(
        record.artifact_id, record.filename, record.mimetype, record.encoding
    )
    return None


def _artifact_removed(state: State, record: ArtifactRemoved) -> Verdict:
    attrs = _artifact_attrs(state, record)
    if isinstance(attrs, Rejected):
        return attrs
    if attrs.pop(ARTIFACTS_ATTR_PREFIX + record.artifact_id, None) is None:
        owner = f"trial {record.trial_id}" if record.trial_id is not None else "its study"
        return Rejected(
            Reason.NO_ARTIFACT, f"No artifact {record.artifact_id!r} is attached to {owner}."
        )
    return None


def _trial_heartbeat(state: State, record: TrialHeartbeat) -> Verdict:
    row = state.trials.get(record.trial_id)
    if row is None:
        return _not_updatable(record.trial_id, row)
    if row.state is StateCode.RUNNING:  # a beat that crossed the trial's end is moot
        row.heartbeat = record.at.timestamp()
        state.beating[row.trial_id] = row
    return None


def _log_compacted(state: State, record: LogCompacted) -> Verdict:
    last_rid = state.last_rid
    for folded_writer, rid in record.last_rid.items():
        last_rid[folded_writer] = max(last_rid.get(folded_writer, 0), rid)
    return None


def _no_study(study_id: int | None) -> Rejected:
    return Rejected(Reason.NO_STUDY, f"No study with study_id {study_id} exists.")


def _not_updatable(trial_id: int, row: TrialRow | None) -> Rejected:
    if row is None:
        return Rejected(Reason.NO_TRIAL, f"No trial with trial_id {trial_id} exists.")
    return Rejected(
        Reason.TRIAL_FINISHED,
        f"Trial#{row.number} has already finished and can not be updated.",
    )


def _study_created(state: State, record: StudyCreated) -> Verdict:
    if record.name in state.study_ids:
        return Rejected(
            Reason.DUPLICATE_STUDY, f"Another study with name '{record.name}' already exists."
        )
    study_id = state.next_study_id
    state.next_study_id += 1
    directions = [DIRECTIONS[d] for d in record.directions]
    state.studies[study_id] = StudyRow(study_id, record.name, directions)
    state.study_ids[record.name] = study_id
    return study_id


def _study_deleted(state: State, record: StudyDeleted) -> Verdict:
    study = state.studies.pop(record.study_id, None)
    if study is None:
        return _no_study(record.study_id)
    del state.study_ids[study.name]
    for row in study.trials:
        del state.trials[row.trial_id]
        state.beating.pop(row.trial_id, None)
    return None


def _trial_created(state: State, record: TrialCreated) -> Verdict:
    study = state.studies.get(record.study_id)
    if study is None:
        return _no_study(record.study_id)
    trial_id = state.next_trial_id
    state.next_trial_id += 1
    start, complete = record.datetime_start, record.datetime_complete
    row = TrialRow(
        trial_id,
        len(study.trials),
        study.study_id,
        record.state,
        None if record.values is None else list(record.values),
        None if start is None else local_time(start),
        None if complete is None else local_time(complete),
        {},
        0,
        dict(record.user_attrs),
        dict(record.system_attrs),
        dict(record.intermediate_values),
    )
    if record.params:
        state.collect_dist_sets()  # before the row's sets are made (it is not in trials yet)
    for name, param in record.params.items():
        name = intern(name)
        dist = from_record(param.distribution)
        row.params[name] = dist.to_external_repr(param.internal)
        row.dist_set = state.with_param(row.dist_set, name, dist)
        study.first_distribution.setdefault(name, dist)
    state.trials[trial_id] = row
    study.trials.append(row)
    study.frozen.append(None)
    study.stale.add(row.number)
    study.counts[row.state] += 1
    _update_best(study, row)
    return trial_id


def _trial_param_set(state: State, record: TrialParamSet) -> Verdict:
    row = state.trials.get(record.trial_id)
    if row is None or row.state in FINISHED:
        return _not_updatable(record.trial_id, row)
    study = state.studies[row.study_id]
    key = (row.dist_set, record.name, distribution_key(record.distribution))
    step = study.param_steps.get(key)
    if step is None:
        dist = from_record(record.distribution)
        first = study.first_distribution.setdefault(record.name, dist)
        if first is not dist:
            try:
                check_distribution_compatibility(first, dist)
            except ValueError as err:
                return Rejected(Reason.INCOMPATIBLE_DISTRIBUTION, f"{record.name}: {err}")
        name = intern(record.name)  # one string for the name in every trial, not one each
        state.collect_dist_sets()  # before a set is made; it may renumber the row's set
        key = (row.dist_set, name, key[2])
        step = study.param_steps[key] = (name, dist, state.with_param(row.dist_set, name, dist))
    name, dist, row.dist_set = step
    row.params[name] = dist.to_external_repr(record.internal)
    study.stale.add(row.number)
    return None


def _trial_state_set(state: State, record: TrialStateSet) -> Verdict:
    row = state.trials.get(record.trial_id)
    if row is None or row.state in FINISHED:
        return _not_updatable(record.trial_id, row)
    new = record.state
    if new is StateCode.RUNNING:
        if row.state is StateCode.RUNNING:
            return False  # someone else's claim came first
        row.datetime_start = local_time(record.at)
    elif new in FINISHED:
        row.datetime_complete = local_time(record.at)
    study = state.studies[row.study_id]
    study.counts[row.state] -= 1
    study.counts[new] += 1
    row.state = new
    if record.values is not None:
        row.values = list(record.values)
    study.stale.add(row.number)
    _update_best(study, row)
    if state.beating:
        state.beating.pop(row.trial_id, None)  # no longer running (a claim returned above)
    return True


def _update_best(study: StudyRow, row: TrialRow) -> None:
    """Keep the best COMPLETE trial; ties go to the lower number, as Optuna's scan does."""
    if row.state is not StateCode.COMPLETE or not row.values or len(study.directions) != 1:
        return
    best = study.best
    if best is None or best.values is None:
        study.best = row
        return
    value, incumbent = row.values[0], best.values[0]
    if study.directions[0] is StudyDirection.MAXIMIZE:
        better = value > incumbent
    else:
        better = value < incumbent
    if better or (value == incumbent and row.number < best.number):
        study.best = row


_CASES: dict[type, Callable[[State, Any], Verdict]] = {
    TrialIntermediateValueSet: _intermediate_value_set,
    TrialParamSet: _trial_param_set,
    TrialStateSet: _trial_state_set,
    TrialCreated: _trial_created,
    TrialUserAttrSet: _trial_attr_set,
    TrialSystemAttrSet: _trial_attr_set,
    TrialHeartbeat: _trial_heartbeat,
    StudyUserAttrSet: _study_attr_set,
    StudySystemAttrSet: _study_attr_set,
    StudyCreated: _study_created,
    StudyDeleted: _study_deleted,
    LogCompacted: _log_compacted,
    ArtifactUploaded: _artifact_uploaded,
    ArtifactRemoved: _artifact_removed,
}
"""The case for each record kind."""
