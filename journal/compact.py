"""``optuna-journal compact``: rewrite a log file into a shorter one that replays the same.

Under the append lock, the log up to a recent point is folded into the records that rebuild
its state: each study and trial created once, in the order they were first created (so every
id comes out the same), with its final attrs, params, values and intermediate values. Deleted
studies are created and deleted again, under a placeholder name, so that ids after them do not
move. A :class:`~optuna_journal.records.LogCompacted` record notes the writers' counts and
where the original went. The most recent records are kept as they were: a writer that has
appended but not yet read its record back still finds it.

The new log is written beside the old, checked to replay to the same studies and trials,
and renamed over it. Readers notice the new file and replay it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
import os
from typing import cast
import uuid

from optuna_journal import codec, log
from optuna_journal.backends import frames
from optuna_journal.backends.file import FileBackend, _fsync_directory, scratch_file
from optuna_journal.distributions import internal_value, to_record
from optuna_journal.errors import CorruptLogError, JournalError
from optuna_journal.records import (
    SCHEMA_VERSION,
    AnyRecord,
    Direction,
    JournalHeader,
    LogCompacted,
    Param,
    StudyCreated,
    StudyDeleted,
    StudySystemAttrSet,
    StudyUserAttrSet,
    TrialCreated,
    TrialHeartbeat,
)
from optuna_journal.replay import Rejected, State, apply
from optuna_journal.replay.state import TrialRow
from optuna_journal.writer import writer_id


@dataclass
class Compaction:
    records_before: int
    records_after: int
    bytes_before: int
    bytes_after: int
    archive: str | None


def compact(
    path: str, *, archive: bool = False, keep: int = 1000, keep_seconds: float = 300.0
) -> Compaction:
    """Compact the log file at ``path``.

    Args:
        path: The journal file.
        archive: Keep the original log as ``<path>.archive-<time>`` (a hard link, no copy).
        keep: Keep at least this many of the last records as they are ...
        keep_seconds: ... and every record written in this many seconds before now.

    Raises:
        CorruptLogError: The log has a corrupt frame; ``verify`` and ``repair`` it first.
        JournalError: The rewritten log would not replay to the same state (nothing changes).
    """
    backend = FileBackend(path)
    with backend.exclusive() as handoff:
        found = backend.inspect()  # every checksum, even where replay needs fewer
        if found.error is not None:
            raise CorruptLogError(path, found.end, found.records, found.error)
        numbered = list(log.records(backend))
        header = numbered[0][1]
        assert isinstance(header, JournalHeader)
        records: list[AnyRecord] = [r for _, r in numbered[1:]]  # type: ignore[misc]
        cutoff = datetime.now(timezone.utc) - timedelta(seconds=keep_seconds)
        fold = max(0, len(records) - keep)
        while fold > 0 and records[fold - 1].at >= cutoff:
            fold -= 1
        archive_path = None
        if archive:
            archive_path = f"{backend.location}.archive-{datetime.now():%Y%m%d-%H%M%S}"
        folded = _fold(records[:fold], fold, archive_path)
        new_header = JournalHeader(
            schema_version=SCHEMA_VERSION,
            library=header.library,
            writer=writer_id(),
            at=datetime.now(timezone.utc),
        )
        tail_payloads = [codec.encode(r) for r in records[fold:]]
        payloads = [codec.encode(new_header)] + [codec.encode(r) for r in folded] + tail_payloads

        temp = backend.scratch_paths[1]
        with scratch_file(temp):
            with open(temp, "wb") as f:
                f.write(frames.MAGIC + frames.mark(0) + b"".join(frames.pack(p) for p in payloads))
                f.flush()
                os.fsync(f.fileno())
            _check_equivalent(backend, FileBackend(temp))
            if archive_path is not None:
                os.link(backend.location, archive_path)
            backend.lock.verify()
            before = os.path.getsize(backend.location)
            os.replace(temp, backend.location)
        handoff.leave = backend.end()
        _fsync_directory(os.path.dirname(backend.location))
        if os.path.exists(backend.snapshot_path):  # it names the old log: useless now
            os.unlink(backend.snapshot_path)
        return Compaction(
            records_before=len(numbered),
            records_after=len(payloads),
            bytes_before=before,
            bytes_after=os.path.getsize(backend.location),
            archive=archive_path,
        )


def _fold(records: list[AnyRecord], count: int, archive: str | None) -> list[AnyRecord]:
    """Records that rebuild what ``records`` built, with every id the same."""
    state = State()
    created: list[tuple[str, int, int]] = []  # ("study" | "trial", id, study id) in log order
    for record in records:
        verdict = apply(state, record)
        if isinstance(verdict, Rejected) or not isinstance(verdict, int):
            continue
        if isinstance(record, StudyCreated):
            created.append(("study", verdict, verdict))
        elif isinstance(record, TrialCreated):
            created.append(("trial", verdict, record.study_id))

    # A writer id of its own: the kept tail may hold records of this very process and thread,
    # whose counts must not look like repeats next to the folded records.
    writer = f"{writer_id()}:compact"
    at = datetime.now(timezone.utc)
    out: list[AnyRecord] = []

    def add(kind: type[AnyRecord], **fields: object) -> None:
        """Append a record of ``kind``, written now unless ``fields`` give its ``at``."""
        out.append(kind(writer=writer, rid=len(out) + 1, **{"at": at, **fields}))  # type: ignore[arg-type]

    deleted = []
    for kind, ident, study_id in created:
        study = state.studies.get(study_id)
        if kind == "study":
            if study is None:
                deleted.append(ident)
                add(
                    StudyCreated,
                    name=f"optuna-journal:deleted:{ident}:{uuid.uuid4().hex}",
                    directions=(Direction.MINIMIZE,),
                )
                continue
            add(
                StudyCreated,
                name=study.name,
                directions=tuple(Direction(d.value) for d in study.directions),
            )
            for key, value in study.user_attrs.items():
                add(StudyUserAttrSet, study_id=ident, key=key, value=value)
            for key, value in study.system_attrs.items():
                add(StudySystemAttrSet, study_id=ident, key=key, value=value)
        elif ident in state.trials:
            add(TrialCreated, study_id=study_id, **_trial_fields(state.trials[ident], state))
        else:
            add(TrialCreated, study_id=study_id)  # a trial of a deleted study: keeps ids in step
    for ident in deleted:
        add(StudyDeleted, study_id=ident)
    for ident, row in state.beating.items():  # running trials keep their last heartbeat
        when = datetime.fromtimestamp(cast(float, row.heartbeat), timezone.utc)
        add(TrialHeartbeat, at=when, trial_id=ident)
    add(LogCompacted, last_rid=dict(state.last_rid), folded=count, archive=archive)
    return out


def _trial_fields(row: TrialRow, state: State) -> dict[str, object]:
    distributions = state.distributions(row)
    return {
        "state": row.state,
        "values": None if row.values is None else tuple(row.values),
        "datetime_start": _utc(row.datetime_start),
        "datetime_complete": _utc(row.datetime_complete),
        "params": {
            name: Param(internal_value(distributions[name], value), to_record(distributions[name]))
            for name, value in row.params.items()
        },
        "user_attrs": row.user_attrs,
        "system_attrs": row.system_attrs,
        "intermediate_values": row.intermediate_values,
    }


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(timezone.utc)


def _check_equivalent(old: FileBackend, new: FileBackend) -> None:
    """Both logs replay to the same studies, trials and ids, or nothing is replaced."""
    from optuna_journal.storage import JournalStorage

    a = JournalStorage(old, snapshot_every=0)
    b = JournalStorage(new, snapshot_every=0)
    if _observable(a._state) != _observable(b._state):
        raise JournalError(
            f"{old.location}: the compacted log would not replay to the same state; the log "
            "was left as it was (please report this)"
        )


def _observable(state: State) -> str:
    """Everything Optuna can read from a state, as text (NaN equals NaN as text)."""
    studies = [
        (sid, s.name, s.directions, s.user_attrs, s.system_attrs, state.frozen_trials(sid))
        for sid, s in state.studies.items()
    ]
    return repr((studies, state.next_study_id, state.next_trial_id))
