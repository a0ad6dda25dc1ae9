"""Snapshots: the replayed state at a log position, as msgspec bytes (never pickle).

A snapshot is ``MAGIC`` then one frame (length, CRC32, header CRC) whose payload is a
:class:`Snapshot` followed by its digest. It names the log it belongs to by the log's header
record and where in that log it stands (a cursor), so a reader can tell a snapshot of another
log, of another schema, or ahead of the log, and replay from the start instead. Loading one
never changes a result: state from a snapshot plus the tail equals state from a full replay.

The frame's CRC only tells damage from chance: a tool that decodes a snapshot, edits a value and
frames it again (``frames.pack``) makes a sound frame of a lie. So the payload ends with a
BLAKE2b digest (16 bytes) of the encoded :class:`Snapshot`, keyed by the log's record 0: an
edit made without recomputing it, or the digest of a snapshot moved beside another log, fails.
This catches edits, re-framing tools and mix-ups; it is no signature: the key is in the log, and
someone who reimplements the digest can forge a snapshot. It binds the snapshot to record 0
only (the :class:`~optuna_journal.backends.base.Backend` API reads no bytes before a cursor), so
a log rewritten after record 0 to the same length is not detected by it.

Parameters are kept in Optuna's external representation, so categorical choices such as
``1`` and ``True`` survive exactly.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import msgspec
from optuna.distributions import BaseDistribution

from optuna_journal.backends import frames
from optuna_journal.backends.base import Backend, Cursor
from optuna_journal.distributions import from_record, to_record
from optuna_journal.records import (
    SCHEMA_VERSION,
    AnyDistribution,
    Direction,
    StateCode,
)
from optuna_journal.replay.apply import DIRECTIONS
from optuna_journal.replay.state import State, StudyRow, TrialRow

MAGIC = b"\x89OJS\r\n\x1a\n"
FORMAT = 3
"""Bumped when this module's Structs or layout change; a snapshot of another format is ignored
(snapshots are caches: a full replay rebuilds the state). 3: the payload ends with a digest."""

DIGEST_SIZE = 16


class SnapshotError(ValueError):
    """A snapshot that cannot be used; the caller replays the log from the start."""


class StudySnap(msgspec.Struct, array_like=True, gc=False):
    study_id: int
    name: str
    directions: list[Direction]
    user_attrs: dict[str, Any]
    system_attrs: dict[str, Any]
    trials: list[TrialRow]  # by number, as replay keeps them
    first_distribution: dict[str, int]  # index into Snapshot.distributions
    best: int | None  # the best trial's number


class Snapshot(msgspec.Struct, gc=False):
    format: int
    schema_version: int
    head: bytes  # the log's record 0, which names the log
    cursor: tuple[int, int | str]
    time_zone: str  # rows hold naive local datetimes, as Optuna shows them: local to this zone
    position: int
    next_study_id: int
    next_trial_id: int
    last_rid: dict[str, int]
    distributions: list[AnyDistribution]  # each distinct one once
    dist_sets: list[dict[str, int]]  # State.dist_sets, as indexes into `distributions`
    studies: list[StudySnap]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Snapshot)


def _digest(body: bytes, head: bytes) -> bytes:
    """BLAKE2b of a snapshot's encoded body, keyed by the log's record 0 (hashed to a 64-byte
    key: a record 0 may be longer than BLAKE2b's longest key)."""
    key = hashlib.blake2b(head, person=b"ojs-head").digest()
    return hashlib.blake2b(body, key=key, digest_size=DIGEST_SIZE, person=b"ojs-body").digest()


def _time_zone() -> str:
    """This process's local time zone, as the rules that turn UTC into naive local time."""
    return f"{time.tzname}|{time.timezone}|{time.altzone}|{time.daylight}"


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
            trials=study.trials,
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
        time_zone=_time_zone(),
        position=state.position,
        next_study_id=state.next_study_id,
        next_trial_id=state.next_trial_id,
        last_rid=state.last_rid,
        distributions=table,
        dist_sets=[{k: at(v) for k, v in s.items()} for s in state.dist_sets],
        studies=studies,
    )
    body = _encoder.encode(snapshot)
    return MAGIC + frames.pack(body + _digest(body, head))


def decode(data: bytes, head: bytes) -> tuple[State, Cursor]:
    """Rebuild the state a snapshot holds.

    Args:
        data: The snapshot's bytes.
        head: Record 0 of the log it is to be used with.

    Raises:
        SnapshotError: It is damaged, of another format or schema, of another log, edited
            since it was taken (its digest fails), taken in another time zone (its naive local
            datetimes would be wrong here), or its rows do not hold together.
    """
    if not data.startswith(MAGIC):
        raise SnapshotError("not a snapshot (bad magic)")
    parsed = frames.parse(data[len(MAGIC) :])
    if parsed.error or len(parsed.payloads) != 1 or parsed.stop != len(data) - len(MAGIC):
        raise SnapshotError(parsed.error or "truncated or padded")
    payload = parsed.payloads[0]
    body, digest = payload[:-DIGEST_SIZE], payload[-DIGEST_SIZE:]
    try:
        snap = _decoder.decode(body)
    except (msgspec.DecodeError, RecursionError) as err:
        raise SnapshotError(f"of another format ({err})") from None
    if snap.format != FORMAT or snap.schema_version != SCHEMA_VERSION:
        raise SnapshotError(
            f"of format {snap.format} and schema {snap.schema_version}; this version writes "
            f"format {FORMAT} and schema {SCHEMA_VERSION}"
        )
    if snap.head != head:
        raise SnapshotError("of another log (its record 0 differs)")
    if len(payload) < DIGEST_SIZE or not hmac.compare_digest(digest, _digest(body, head)):
        raise SnapshotError(
            "edited since it was taken, or not of this log (its digest does not match its "
            "content and the log's record 0)"
        )
    if snap.time_zone != _time_zone():
        raise SnapshotError(f"taken in another time zone ({snap.time_zone})")

    try:
        return _rebuild(snap)
    except (IndexError, KeyError, ValueError, TypeError) as err:  # rows that do not fit
        raise SnapshotError(f"inconsistent ({type(err).__name__}: {err})") from None


def _rebuild(snap: Snapshot) -> tuple[State, Cursor]:
    state = State()
    state.position = snap.position
    state.next_study_id = snap.next_study_id
    state.next_trial_id = snap.next_trial_id
    state.last_rid = snap.last_rid
    table = [from_record(d) for d in snap.distributions]
    state.dist_sets = [{k: table[i] for k, i in d.items()} for d in snap.dist_sets]
    trials = state.trials
    for s in snap.studies:
        study = StudyRow(s.study_id, s.name, [DIRECTIONS[d] for d in s.directions])
        study.user_attrs = s.user_attrs
        study.system_attrs = s.system_attrs
        study.first_distribution = {k: table[i] for k, i in s.first_distribution.items()}
        study.trials = rows = s.trials
        counts = study.counts
        for row in rows:
            counts[row.state] += 1
            trials[row.trial_id] = row
            if row.heartbeat is not None and row.state is StateCode.RUNNING:
                state.beating[row.trial_id] = row
        study.frozen = [None] * len(rows)
        study.stale = set(range(len(rows)))
        study.best = None if s.best is None else rows[s.best]
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
    located = backend.locate(cursor)
    if located is None:
        raise SnapshotError(f"ahead of the log (record {cursor.records}); was the log cut short?")
    return state, located, head


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
