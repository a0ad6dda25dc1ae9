"""To and from Optuna's own storages: ``export --format optuna`` and ``import``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
import json
import os
from typing import Any

import optuna
from optuna.distributions import distribution_to_json
from optuna.storages import BaseStorage
from tqdm import tqdm

from optuna_journal import log
from optuna_journal.backends.base import Backend
from optuna_journal.distributions import from_record
from optuna_journal.records import (
    AnyRecord,
    ArtifactRemoved,
    ArtifactUploaded,
    JournalHeader,
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
from optuna_journal.replay import Rejected, State, apply
from optuna_journal.replay.apply import ARTIFACTS_ATTR_PREFIX, artifact_meta
from optuna_journal.replay.state import FINISHED
from optuna_journal.storage import JournalStorage


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")  # aware UTC, as Optuna writes them


def optuna_operations(backend: Backend) -> Iterator[dict[str, Any]]:
    """The log as the operations of Optuna's ``JournalStorage``, one dict per record.

    Only records that took effect are given (a rejected write, a lost claim or a repeat
    changed nothing), so Optuna's replay reaches the same studies, ids and numbers.
    """
    state = State()
    for _, record in log.records(backend):
        if isinstance(record, JournalHeader):
            state.position += 1
            continue
        verdict = apply(state, record)
        if (
            isinstance(verdict, Rejected)
            or verdict is False
            or isinstance(record, (LogCompacted, TrialHeartbeat))
        ):
            continue  # changed nothing Optuna's journal keeps
        yield {"worker_id": record.writer, **_operation(record)}


def _operation(record: AnyRecord) -> dict[str, Any]:
    match record:
        case StudyCreated():
            return {
                "op_code": 0,
                "study_name": record.name,
                "directions": [int(d) for d in record.directions],
            }
        case StudyDeleted():
            return {"op_code": 1, "study_id": record.study_id}
        case StudyUserAttrSet():
            return {
                "op_code": 2,
                "study_id": record.study_id,
                "user_attr": {record.key: record.value},
            }
        case StudySystemAttrSet():
            return {
                "op_code": 3,
                "study_id": record.study_id,
                "system_attr": {record.key: record.value},
            }
        case TrialCreated():
            op: dict[str, Any] = {
                "op_code": 4,
                "study_id": record.study_id,
                "datetime_start": None
                if record.datetime_start is None
                else _iso(record.datetime_start),
                "state": int(record.state),
                "value": None,
                "values": None if record.values is None else list(record.values),
                "distributions": {
                    k: distribution_to_json(from_record(p.distribution))
                    for k, p in record.params.items()
                },
                "params": {k: p.internal for k, p in record.params.items()},
                "user_attrs": record.user_attrs,
                "system_attrs": record.system_attrs,
                "intermediate_values": {str(k): v for k, v in record.intermediate_values.items()},
            }
            if record.values is not None and len(record.values) == 1:
                op["value"], op["values"] = record.values[0], None
            if record.datetime_complete is not None:
                op["datetime_complete"] = _iso(record.datetime_complete)
            return op
        case TrialParamSet():
            return {
                "op_code": 5,
                "trial_id": record.trial_id,
                "param_name": record.name,
                "param_value_internal": record.internal,
                "distribution": distribution_to_json(from_record(record.distribution)),
            }
        case TrialStateSet():
            op = {
                "op_code": 6,
                "trial_id": record.trial_id,
                "state": int(record.state),
                "values": None if record.values is None else list(record.values),
            }
            if record.state is StateCode.RUNNING:
                op["datetime_start"] = _iso(record.at)
            elif record.state in FINISHED:
                op["datetime_complete"] = _iso(record.at)
            return op
        case TrialIntermediateValueSet():
            return {
                "op_code": 7,
                "trial_id": record.trial_id,
                "step": record.step,
                "intermediate_value": record.value,
            }
        case TrialUserAttrSet():
            return {
                "op_code": 8,
                "trial_id": record.trial_id,
                "user_attr": {record.key: record.value},
            }
        case TrialSystemAttrSet():
            return {
                "op_code": 9,
                "trial_id": record.trial_id,
                "system_attr": {record.key: record.value},
            }
        case ArtifactUploaded() | ArtifactRemoved():
            key = ARTIFACTS_ATTR_PREFIX + record.artifact_id
            meta = (
                artifact_meta(
                    record.artifact_id, record.filename, record.mimetype, record.encoding
                )
                if isinstance(record, ArtifactUploaded)
                else json.dumps(None)  # as optuna-dashboard removes one
            )
            if record.trial_id is not None:
                return {"op_code": 9, "trial_id": record.trial_id, "system_attr": {key: meta}}
            return {"op_code": 3, "study_id": record.study_id, "system_attr": {key: meta}}
    raise AssertionError(f"unhandled record {record!r}")


def export_optuna(backend: Backend, path: str) -> int:
    """Write an Optuna ``JournalFileBackend`` log of the journal; return the operations written.

    Raises:
        FileExistsError: ``path`` exists; it is never overwritten.
    """
    count = 0
    with open(path, "x") as f:
        for op in optuna_operations(backend):
            f.write(json.dumps(op, separators=(",", ":")) + "\n")  # NaN/Infinity as Optuna does
            count += 1
    return count


def source_storage(source: str) -> BaseStorage:
    """An Optuna storage URL (``sqlite:///...``), or the path of an Optuna journal file."""
    if "://" in source:
        return optuna.storages.get_storage(source)
    if not os.path.exists(source):
        raise FileNotFoundError(f"{source}: no such file")
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(source))


def import_studies(source: BaseStorage, target: JournalStorage) -> list[tuple[str, int]]:
    """Copy every study of ``source`` into ``target``, keeping names, trial numbers, states,
    values, params and distributions, attrs, intermediate values and datetimes.

    Returns:
        ``(study name, trials copied)`` for each study.

    Raises:
        DuplicatedStudyError: ``target`` already has a study of that name.
    """
    copied = []
    for study in source.get_all_studies():
        trials = source.get_all_trials(study._study_id, deepcopy=False)
        study_id = target.create_new_study(study.directions, study.study_name)
        for key, value in study.user_attrs.items():
            target.set_study_user_attr(study_id, key, value)
        for key, value in study.system_attrs.items():
            target.set_study_system_attr(study_id, key, value)
        for trial in tqdm(trials, desc=study.study_name, unit="trial", leave=False):
            target.create_new_trial(study_id, template_trial=trial)
        copied.append((study.study_name, len(trials)))
    return copied
