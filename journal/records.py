"""The only schema of the log: one frozen, tagged msgspec Struct per mutation.

Every record is a past-tense fact. Tags are pinned strings, never class names, so classes can
be renamed freely. Records are encoded as msgpack arrays (``array_like``): the tag, then the
base fields (``rid``, ``writer``, ``at``), then the record's own fields in declaration order.

Evolution rules (SCHEMA_VERSION counts breaking changes only):

* a new field gets a default and goes last in its class; never add a field to ``Record``;
* never retype a field or reuse a tag; a breaking change is a new tag plus an upcaster;
* enum values below are pinned to the numbers Optuna uses and never change.

Record 0 of every log is a :class:`JournalHeader`, encoded as a map so that any version can
read its ``schema_version`` before deciding whether it can read the rest.
"""

from __future__ import annotations

from datetime import datetime
import enum
import typing
from typing import Annotated, Any

import msgspec

SCHEMA_VERSION = 1
"""Bumped only by a change an older reader cannot decode."""

UtcDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
"""Timezone-aware datetimes only: msgpack carries them as timestamps, exact to the microsecond."""


class Direction(enum.IntEnum):
    """Pinned to ``optuna.study.StudyDirection`` values."""

    MINIMIZE = 1
    MAXIMIZE = 2


class StateCode(enum.IntEnum):
    """Pinned to ``optuna.trial.TrialState`` values."""

    RUNNING = 0
    COMPLETE = 1
    PRUNED = 2
    FAIL = 3
    WAITING = 4


# Distributions: typed Structs, not JSON inside a string.


class FloatDist(msgspec.Struct, frozen=True, array_like=True, tag_field="kind", tag="float"):
    low: float
    high: float
    log: bool = False
    step: float | None = None


class IntDist(msgspec.Struct, frozen=True, array_like=True, tag_field="kind", tag="int"):
    low: int
    high: int
    log: bool = False
    step: int = 1


Choice = None | bool | int | float | str


class CategoricalDist(
    msgspec.Struct, frozen=True, array_like=True, tag_field="kind", tag="categorical"
):
    choices: tuple[Choice, ...]


AnyDistribution = FloatDist | IntDist | CategoricalDist


class Param(msgspec.Struct, frozen=True, array_like=True):
    """A parameter in Optuna's internal representation, with its distribution."""

    internal: float
    distribution: AnyDistribution


# The log's header.


class JournalHeader(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="op", tag="journal.header"
):
    """Record 0 of every log; a map, so every version can read it."""

    schema_version: int
    library: str
    writer: str
    at: UtcDatetime


# Records.


class Record(msgspec.Struct, frozen=True, kw_only=True, array_like=True, gc=False, tag_field="op"):
    """Fields every record carries (``gc=False``: a record never takes part in a cycle).

    Attributes:
        writer: ``host:pid:nonce:thread`` of the writing process and thread.
        rid: The writer's own count of its records, from 1. ``(writer, rid)`` is the record's
            unique id: the writer finds its verdict in the log by it, and replay applies a
            record only if its ``rid`` exceeds the last one applied for that writer, so an
            append retried after a lost reply takes effect once.
        at: Wall-clock time of the write; replay never reads the clock.
    """

    writer: str
    rid: int
    at: UtcDatetime


class StudyCreated(Record, frozen=True, kw_only=True, tag="study.created"):
    name: str
    directions: tuple[Direction, ...]


class StudyDeleted(Record, frozen=True, kw_only=True, tag="study.deleted"):
    study_id: int


class StudyUserAttrSet(Record, frozen=True, kw_only=True, tag="study.user_attr_set"):
    study_id: int
    key: str
    value: Any


class StudySystemAttrSet(Record, frozen=True, kw_only=True, tag="study.system_attr_set"):
    study_id: int
    key: str
    value: Any


class TrialCreated(Record, frozen=True, kw_only=True, tag="trial.created"):
    """A new trial, with every field a template trial can carry."""

    study_id: int
    state: StateCode = StateCode.RUNNING
    values: tuple[float, ...] | None = None
    datetime_start: UtcDatetime | None = None
    datetime_complete: UtcDatetime | None = None
    params: dict[str, Param] = {}
    user_attrs: dict[str, Any] = {}
    system_attrs: dict[str, Any] = {}
    intermediate_values: dict[int, float] = {}


class TrialParamSet(Record, frozen=True, kw_only=True, tag="trial.param_set"):
    trial_id: int
    name: str
    internal: float
    distribution: AnyDistribution


class TrialStateSet(Record, frozen=True, kw_only=True, tag="trial.state_set"):
    """A state change, with the objective values when it has them; time is ``at``."""

    trial_id: int
    state: StateCode
    values: tuple[float, ...] | None = None


class TrialIntermediateValueSet(
    Record, frozen=True, kw_only=True, tag="trial.intermediate_value_set"
):
    trial_id: int
    step: int
    value: float


class TrialUserAttrSet(Record, frozen=True, kw_only=True, tag="trial.user_attr_set"):
    trial_id: int
    key: str
    value: Any


class TrialSystemAttrSet(Record, frozen=True, kw_only=True, tag="trial.system_attr_set"):
    trial_id: int
    key: str
    value: Any


class TrialHeartbeat(Record, frozen=True, kw_only=True, tag="trial.heartbeat"):
    """The process running the trial was alive at ``at`` (Optuna's heartbeat)."""

    trial_id: int


class LogCompacted(Record, frozen=True, kw_only=True, tag="log.compacted"):
    """Where ``compact`` folded records away: the writers' counts they had reached (so that a
    repeat of a folded record is still known as one), how many, and where the original went."""

    last_rid: dict[str, int]
    folded: int
    archive: str | None = None


class ArtifactUploaded(Record, frozen=True, kw_only=True, tag="artifact.uploaded"):
    """An artifact's bytes were stored (in any artifact store) for a trial or, with
    ``trial_id`` None, a study. Replay shows it as Optuna does: the system attr
    ``artifacts:<artifact_id>``. ``size`` and ``sha256`` are known when our store wrote it."""

    study_id: int | None = None
    trial_id: int | None = None
    artifact_id: str
    filename: str
    mimetype: str
    encoding: str | None = None
    size: int | None = None
    sha256: str | None = None


class ArtifactRemoved(Record, frozen=True, kw_only=True, tag="artifact.removed"):
    """An artifact was detached from its trial or study (its attr set to JSON ``null``, as
    optuna-dashboard does when it deletes one)."""

    study_id: int | None = None
    trial_id: int | None = None
    artifact_id: str


AnyRecord = (
    StudyCreated
    | StudyDeleted
    | StudyUserAttrSet
    | StudySystemAttrSet
    | TrialCreated
    | TrialParamSet
    | TrialStateSet
    | TrialIntermediateValueSet
    | TrialUserAttrSet
    | TrialSystemAttrSet
    | TrialHeartbeat
    | LogCompacted
    | ArtifactUploaded
    | ArtifactRemoved
)

RECORD_TYPES: tuple[type[Record], ...] = typing.get_args(AnyRecord)
RECORD_TAGS: frozenset[str] = frozenset(str(t.__struct_config__.tag) for t in RECORD_TYPES)
