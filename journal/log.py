"""A whole log as decoded records, for the tools that need every record rather than the
state: time travel, history, export, verify."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import NamedTuple

from tqdm import tqdm

from optuna_journal import codec
from optuna_journal.backends.base import Backend, Cursor
from optuna_journal.records import AnyRecord, JournalHeader, StudyCreated, TrialCreated
from optuna_journal.replay import State, Verdict, apply


def batches(
    backend: Backend, after: Cursor | None = None
) -> Iterator[tuple[Cursor, list[tuple[int, JournalHeader | AnyRecord]]]]:
    """Yield the log's records after ``after`` batch by batch, numbered (the header is 0),
    each batch with the cursor after it, to resume from.

    Raises:
        SchemaVersionError: The log was written by a newer schema.
        CorruptLogError: A record fails its checks.
        UnknownRecordError: A record kind this version does not know.
    """
    number = 0 if after is None else after.records
    for batch in backend.read(after):
        payloads = batch.payloads
        numbered: list[tuple[int, JournalHeader | AnyRecord]] = []
        if number == 0:
            numbered.append((0, codec.decode_header(payloads[0], backend.location)))
            payloads, number = payloads[1:], 1
        numbered += enumerate(codec.decode(payloads, backend.location, number), start=number)
        number += len(payloads)
        yield batch.cursor, numbered


def records(
    backend: Backend, progress: bool = False
) -> Iterator[tuple[int, JournalHeader | AnyRecord]]:
    """Yield ``(number, record)`` for every record of the log, the header (number 0) first;
    with ``progress``, show a tqdm progress bar on a terminal."""
    with tqdm(unit=" records", disable=None if progress else True, leave=False) as bar:
        for _, numbered in batches(backend):
            yield from numbered
            bar.update(len(numbered))


class Entry(NamedTuple):
    """One record in the history of a study or trial, with what replay made of it."""

    number: int
    record: AnyRecord
    verdict: Verdict


def history(
    backend: Backend, *, study_id: int | None = None, trial_id: int | None = None
) -> list[Entry]:
    """Every record that touched a study (its trials' creation included) or a trial.

    Raises:
        ValueError: Not exactly one of ``study_id`` and ``trial_id`` is given.
    """
    if (study_id is None) == (trial_id is None):
        raise ValueError("give exactly one of study_id and trial_id")
    state = State()
    entries: list[Entry] = []
    for number, record in records(backend):
        if isinstance(record, JournalHeader):
            state.position += 1
            continue
        verdict = apply(state, record)
        if trial_id is not None:
            created = isinstance(record, TrialCreated) and verdict == trial_id
            touched = created or getattr(record, "trial_id", None) == trial_id
        else:
            created = isinstance(record, StudyCreated) and verdict == study_id
            touched = created or getattr(record, "study_id", None) == study_id
        if touched:
            entries.append(Entry(number, record, verdict))
    return entries


def replay_until(
    backend: Backend, position: int | None = None, time: datetime | None = None
) -> tuple[State, JournalHeader | None, bytes | None]:
    """The state after ``position`` records, or after every record written before the first
    one written after ``time`` (a prefix of the log, so clock skew between writers never
    yields a state the log never passed through)."""
    state = State()
    header: JournalHeader | None = None
    for number, record in records(backend):
        if position is not None and number >= position:
            break
        if isinstance(record, JournalHeader):
            header = record
            state.position += 1
            continue
        if time is not None and record.at > time:
            break
        apply(state, record)
    head = backend.head() if header is not None else None
    return state, header, head
