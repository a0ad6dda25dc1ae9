"""Snapshots: the replayed state at a log position, as msgspec bytes (never pickle).

A snapshot is ``MAGIC`` then one frame (length, CRC32, header CRC) whose payload is a
:class:`Snapshot`. It names the log it belongs to by the log's header record and where in that
log it stands (a cursor), so a reader can tell a snapshot of another log, of another schema, or
ahead of the log, and replay from the start instead. Loading one never changes a result: state
from a snapshot plus the tail equals state from a full replay.

Parameters are kept in Optuna's external representation, so categorical choices such as
``1`` and ``True`` survive exactly.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import msgspec
from optuna.distributions import BaseDistribution

from optuna_journal.backends import frames
from optuna_journal.backends.base import Backend, Cursor
from optuna_journal.distributions import from_record, to_record
from optuna_journal.records import (
    SCHEMA_VERSION,
    AnyDistribution,
    Choice,
    Direction,
    StateCode,
    UtcDatetime,
)
from optuna_journal.replay.apply import DIRECTIONS, local_time
from optuna_journal.replay.state import State, StudyRow, TrialRow

MAGIC = b"\x89OJS\r\n\x1a\n"
FORMAT = 1
"""Bumped when this module's Structs change; a snapshot of another format is ignored."""


class SnapshotError(ValueError):
    """A snapshot that cannot be used; the caller replays the log from the start."""


class TrialSnap(msgspec.Struct, array_like=True, gc=False):
    trial_id: int
    state: StateCode
    values: list[float] | None
    datetime_start: UtcDatetime | None
    datetime_complete: UtcDatetime | None
    params: dict[str, Choice]  # external representation
    distributions: dict[str, int]  # index into Snapshot.distributions
    user_attrs: dict[str, Any]
    system_attrs: dict[str, Any]
    intermediate_values: dict[int, float]


class StudySnap(msgspec.Struct, array_like=True, gc=False):
    study_id: int
    name: str
    directions: list[Direction]
    user_attrs: dict[str, Any]
    system_attrs: dict[str, Any]
    trials: list[TrialSnap]  # by number
    first_distribution: dict[str, int]  # index into Snapshot.distributions
    best: int | None  # the best trial's number


class Snapshot(msgspec.Struct, gc=False):
    format: int
    schema_version: int
    head: bytes  # the log's record 0, which names the log
    cursor: tuple[int, int | str]
    position: int
    next_study_id: int
    next_trial_id: int
    last_rid: dict[str, int]
    distributions: list[AnyDistribution]  # each distinct one once
    studies: list[StudySnap]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Snapshot)


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(timezone.utc)


def encode(state: State, head: bytes, cursor: Cursor) -> bytes:
    """The snapshot of ``state``, which has applied the log named by ``head`` up to ``cursor``."""
    table: list[AnyDistribution] = []
    index: dict[int, int] = {}  # id of a shared distribution object -> its place in the table

    def at(d: BaseDistribution) -> int:
        i = index.get(id(d))
        if i is None:
            i = index[id(d)] = len(table)
            table.append(to_record(d))
        return i

    studies = [
        StudySnap(
            study_id=study.study_id,
            name=study.name,
            directions=[Direction(d.value) for d in study.directions],
            user_attrs=study.user_attrs,
            system_attrs=study.system_attrs,
            trials=[
                TrialSnap(
                    trial_id=t.trial_id,
                    state=t.state,
                    values=t.values,
                    datetime_start=_utc(t.datetime_start),
                    datetime_complete=_utc(t.datetime_complete),
                    params=t.params,
                    distributions={k: at(v) for k, v in t.distributions.items()},
                    user_attrs=t.user_attrs,
                    system_attrs=t.system_attrs,
                    intermediate_values=t.intermediate_values,
                )
                for t in study.trials
            ],
            first_distribution={k: at(v) for k, v in study.first_distribution.items()},
            best=None if study.best is None else study.best.number,
        )
        for study in state.studies.values()
    ]
    snapshot = Snapshot(
        format=FORMAT,
        schema_version=SCHEMA_VERSION,
        head=head,
        cursor=(cursor.records, cursor.token),
        position=state.position,
        next_study_id=state.next_study_id,
        next_trial_id=state.next_trial_id,
        last_rid=state.last_rid,
        distributions=table,
        studies=studies,
    )
    return MAGIC + frames.pack(_encoder.encode(snapshot))


def decode(data: bytes, head: bytes) -> tuple[State, Cursor]:
    """Rebuild the state a snapshot holds.

    Args:
        data: The snapshot's bytes.
        head: Record 0 of the log it is to be used with.

    Raises:
        SnapshotError: It is damaged, of another format or schema, or of another log.
    """
    if not data.startswith(MAGIC):
        raise SnapshotError("not a snapshot (bad magic)")
    parsed = frames.parse(data[len(MAGIC) :])
    if parsed.error or len(parsed.payloads) != 1 or parsed.stop != len(data) - len(MAGIC):
        raise SnapshotError(parsed.error or "truncated or padded")
    try:
        snap = _decoder.decode(parsed.payloads[0])
    except msgspec.DecodeError as err:
        raise SnapshotError(f"of another format ({err})") from None
    if snap.format != FORMAT or snap.schema_version != SCHEMA_VERSION:
        raise SnapshotError(
            f"of format {snap.format} and schema {snap.schema_version}; this version writes "
            f"format {FORMAT} and schema {SCHEMA_VERSION}"
        )
    if snap.head != head:
        raise SnapshotError("of another log (its record 0 differs)")

    state = State()
    state.position = snap.position
    state.next_study_id = snap.next_study_id
    state.next_trial_id = snap.next_trial_id
    state.last_rid = snap.last_rid
    table = [from_record(d) for d in snap.distributions]
    for s in snap.studies:
        study = StudyRow(s.study_id, s.name, [DIRECTIONS[d] for d in s.directions])
        study.user_attrs = s.user_attrs
        study.system_attrs = s.system_attrs
        study.first_distribution = {k: table[i] for k, i in s.first_distribution.items()}
        counts = study.counts
        for number, t in enumerate(s.trials):
            row = TrialRow(
                t.trial_id,
                number,
                study,
                t.state,
                t.values,
                None if t.datetime_start is None else local_time(t.datetime_start),
                None if t.datetime_complete is None else local_time(t.datetime_complete),
            )
            row.params = t.params
            row.distributions = {k: table[i] for k, i in t.distributions.items()}
            row.user_attrs = t.user_attrs
            row.system_attrs = t.system_attrs
            row.intermediate_values = t.intermediate_values
            study.trials.append(row)
            counts[t.state] += 1
            state.trials[t.trial_id] = row
        study.frozen = [None] * len(study.trials)
        study.stale = set(range(len(study.trials)))
        study.best = None if s.best is None else study.trials[s.best]
        state.studies[study.study_id] = study
        state.study_ids[study.name] = study.study_id
    return state, Cursor(*snap.cursor)


def load(data: bytes, backend: Backend) -> tuple[State, Cursor, bytes]:
    """Rebuild the state a snapshot holds, checking that it fits the log in ``backend``.

    Returns:
        The state, the cursor it stands at, and the log's record 0.

    Raises:
        SnapshotError: It is damaged, of another format, schema or log, or ahead of the log.
    """
    head = backend.head()
    if head is None:
        raise SnapshotError("of a log that is empty")
    state, cursor = decode(data, head)
    if not backend.reaches(cursor):
        raise SnapshotError(f"ahead of the log (record {cursor.records}); was the log cut short?")
    return state, cursor, head


def is_due(position: int, every: int) -> bool:
    """Whether the record at ``position`` is one after which a snapshot is taken.

    Every ``every`` records while the log is short, then ever more rarely, so that the tail
    left to replay stays within about a tenth of the log and the cost of snapshots per record
    stays bounded however large the study grows. The rule depends on the position alone, so
    of many writers only the one whose record lands there takes the snapshot.
    """
    if every <= 0 or position <= 0:
        return False
    step = every
    while step * 20 <= position:
        step *= 2
    return position % step == 0
