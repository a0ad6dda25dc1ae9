"""``JournalStorage``: Optuna's ``BaseStorage`` on an append-only log of typed records.

Every write builds a record, appends it, reads the log up to and including it, and returns the
verdict replay gave *that* record (found by its ``rid``). Log order decides every conflict, so
every process reaches the same verdict; only the writer of a rejected record sees the error.
Every read first applies the new tail of the log, then answers from memory.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterator, Sequence
import contextlib
from datetime import datetime, timezone
import gc
import threading
import time
from typing import Any, TypeVar, cast
import uuid

import optuna
from optuna._typing import JSONSerializable
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.distributions import BaseDistribution
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.storages._base import DEFAULT_STUDY_NAME_PREFIX
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial, TrialState

from optuna_journal import codec, log
from optuna_journal.artifacts import attr_record
from optuna_journal.backends.base import Backend, Batch, Cursor
from optuna_journal.backends.lock import LeaseLock
from optuna_journal.distributions import internal_value, to_record
from optuna_journal.errors import (
    JournalError,
    LogReplacedError,
    LogTruncatedError,
    ReadOnlyError,
)
from optuna_journal.log import Entry
from optuna_journal.records import (
    SCHEMA_VERSION,
    AnyRecord,
    Direction,
    JournalHeader,
    Param,
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
from optuna_journal.replay import Reason, Rejected, State, Verdict, apply, snapshot
from optuna_journal.replay.apply import apply_all
from optuna_journal.replay.state import FINISHED
from optuna_journal.writer import next_rid, writer_id

_logger = optuna.logging.get_logger("optuna.journal.storage")

_ERRORS: dict[Reason, type[Exception]] = {
    Reason.NO_STUDY: KeyError,
    Reason.NO_TRIAL: KeyError,
    Reason.DUPLICATE_STUDY: DuplicatedStudyError,
    Reason.TRIAL_FINISHED: UpdateFinishedTrialError,
    Reason.INCOMPATIBLE_DISTRIBUTION: ValueError,
    Reason.NO_ARTIFACT: ArtifactNotFound,
}

R = TypeVar("R", bound=AnyRecord)

# What a running trial does between its start and its end; with durability="trial" these
# appends are not synced on their own.
_WITHIN_TRIAL = (
    TrialParamSet,
    TrialIntermediateValueSet,
    TrialUserAttrSet,
    TrialSystemAttrSet,
    TrialHeartbeat,
)

_LARGE_BATCH = 100
"""Replaying this many records, or freezing this many trials, allocates objects that all live
on (a sync after one write replays a few): the GC is held off for it."""


@contextlib.contextmanager
def _gc_paused(pause: bool) -> Iterator[None]:
    """Hold the cyclic GC off while a large batch is replayed or many trials are frozen.

    Both allocate many objects that all live on, and no cycles among them die; each
    collection would walk the whole growing state again, costing more than the work itself.
    """
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _utc(moment: datetime | None) -> datetime | None:
    """Optuna's naive local datetimes (or aware ones) as aware UTC."""
    return None if moment is None else moment.astimezone(timezone.utc)


def _checked_str(text: Any, wrong_type: str, cannot: str) -> None:
    """Fail, before anything is appended, unless ``text`` is a str the log can carry (no lone
    surrogates); the messages start with ``wrong_type`` and ``cannot``."""
    if not isinstance(text, str):
        raise TypeError(f"{wrong_type} must be str, got {type(text).__name__} {text!r}")
    try:
        codec.encode_value(text)
    except ValueError as err:
        raise ValueError(f"{cannot} {text!r}: {err}") from None


def _checked_attr(key: str, value: Any) -> Any:
    """Fail with the key's name, before anything is appended, if ``value`` cannot be stored."""
    _checked_str(key, "attribute keys", "cannot store an attribute under the key")
    try:
        codec.encode_value(value)
    except (TypeError, ValueError) as err:
        raise type(err)(f"cannot store the attribute {key!r}: {err}") from None
    return value


def _check_holds(location: str, applied: dict[str, int], holds: dict[str, int]) -> None:
    """Raise unless a log that replaced another holds every record this process applied from
    the old one: each writer's count (``rid``) must reach as far in the new log."""
    missing = {writer: rid for writer, rid in applied.items() if holds.get(writer, 0) < rid}
    if missing:
        writer, rid = next(iter(missing.items()))
        raise LogTruncatedError(
            f"{location}: the log was replaced by one that lacks records this process has "
            f"applied, from {len(missing)} writer(s) (writer {writer}: up to its record {rid}, "
            f"the log holds up to {holds.get(writer, 0)}): an older copy was put back, or "
            "another log put in its place. Nothing was appended; open the journal again to go "
            "on from what it holds."
        )


def _check_grace(backend: Backend, grace: float) -> None:
    """Warn where a heartbeat's grace period is no longer than the lease lock's lease: a
    writer killed holding that lock on another machine stalls every writer, heartbeats
    included, until its lease runs out, and live trials would then be failed as stale."""
    lock = getattr(backend, "lock", None)
    if isinstance(lock, LeaseLock) and grace <= lock.lease:
        _logger.warning(
            f"{backend.location}: the heartbeat's grace period ({grace} s) is no longer than "
            f"the lock's lease ({lock.lease} s): a writer on another machine killed holding "
            "the lock stops every heartbeat for up to one lease, and live trials would be "
            "failed as stale. Give a grace_period longer than the lease plus a few "
            "heartbeats, or a shorter lock_lease."
        )


class JournalStorage(BaseStorage, BaseHeartbeat):
    """An Optuna storage whose every mutation is a typed record in an append-only log.

    Args:
        backend: Where the log lives, e.g.
            :class:`~optuna_journal.backends.FileBackend` or
            :class:`~optuna_journal.backends.MemoryBackend`.
        snapshot_every: Take a snapshot after about this many records (0: never), so that a
            process opening the journal replays only the tail. Snapshots grow rarer as the
            log grows, keeping their cost per record bounded.
        heartbeat_interval: As in Optuna's ``RDBStorage``: the process running a trial
            records a heartbeat every this many seconds, and a trial whose last heartbeat is
            older than ``grace_period`` is failed by the next ``study.optimize`` (see
            ``optuna.storages.fail_stale_trials``). ``None``: no heartbeats.
        grace_period: Seconds without a heartbeat after which a running trial is stale;
            ``None``: twice ``heartbeat_interval``. Heartbeats carry the writer's clock, which
            is compared with the clock of the process that checks: keep hosts' clocks in sync.
            On a lease-locked file (NFS), keep it longer than the lock's lease: a writer killed
            holding the lock stalls every heartbeat until its lease runs out (a warning says so).
        heartbeat_stale_trial_callback: Called after each stale trial is failed, e.g.
            ``optuna.storages.RetryHeartbeatStaleTrialCallback()``.
        durability: When a write reaches stable storage. ``"append"`` (the default): every
            write, before its call returns. ``"trial"``: writes that create, claim or finish
            a trial or change a study; the writes of a running trial (params, reports,
            attrs, heartbeats) are in the log at once, seen by every process and kept if the
            writing process is killed, and reach stable storage with the next synced write.
            An OS crash or power loss can lose them: a running trial's progress (a gap it
            leaves before later unsynced writes is cut with them as a torn tail: no later
            durability mark vouches for it; in a log made before marks existed,
            ``optuna-journal repair --force`` cuts it). It changes the file backend on a local
            filesystem (two ``fsync`` s a trial, where it starts and where it ends, instead
            of one per write); on NFS every write is synced anyway, and Redis's durability
            is the server's.

    Raises:
        NotAJournalError: The backend holds something that is not a journal.
        SchemaVersionError: The log was written by a newer, incompatible schema.
        CorruptLogError: A record in the log fails its checks.

    Example:
        .. code::

            import optuna
            import optuna_journal

            storage = optuna_journal.open_storage("./study.journal")
            study = optuna.create_study(storage=storage, study_name="demo")
    """

    def __init__(
        self,
        backend: Backend,
        *,
        snapshot_every: int = 10_000,
        heartbeat_interval: int | None = None,
        grace_period: int | None = None,
        heartbeat_stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None,
        durability: str = "append",
    ) -> None:
        if durability not in ("append", "trial"):
            raise ValueError(f"durability must be 'append' or 'trial', got {durability!r}")
        if snapshot_every < 0:
            raise ValueError(f"snapshot_every must be 0 (never) or positive, got {snapshot_every}")
        if heartbeat_interval is not None and heartbeat_interval <= 0:
            raise ValueError("The value of `heartbeat_interval` should be a positive integer.")
        if grace_period is not None and grace_period <= 0:
            raise ValueError("The value of `grace_period` should be a positive integer.")
        if heartbeat_interval is not None:
            _check_grace(backend, grace_period or 2 * heartbeat_interval)
        self._backend = backend
        self._snapshot_every = snapshot_every
        self._heartbeat_interval = heartbeat_interval
        self._grace_period = grace_period
        self._heartbeat_stale_trial_callback = heartbeat_stale_trial_callback
        self._durability = durability
        self._lock = threading.Lock()
        self._state = State()
        self._cursor: Cursor | None = None
        self._header: JournalHeader | None = None
        self._head: bytes | None = None  # record 0 as stored: it names the log in snapshots
        with self._lock:
            self._open()

    def _open(self) -> None:
        """Bring the state up to the end of the log, writing the log's header if it has none."""
        self._restore()
        self._sync()
        if self._header is None:
            self._backend.append_head(
                codec.encode(
                    JournalHeader(
                        schema_version=SCHEMA_VERSION,
                        library=f"optuna-journal {_version()}",
                        writer=writer_id(),
                        at=datetime.now(timezone.utc),
                    )
                )
            )
            self._sync()

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def position(self) -> int:
        """How many records (the header included) this storage has applied."""
        return self._state.position

    def __reduce__(self) -> tuple[Any, ...]:
        # The backend pickles as its location; the child replays the log itself.
        return (
            _reopen,
            (
                self._backend,
                self._snapshot_every,
                self._heartbeat_interval,
                self._grace_period,
                self._heartbeat_stale_trial_callback,
                self._durability,
            ),
        )

    def at(self, *, position: int | None = None, time: datetime | None = None) -> JournalStorage:
        """A read-only storage showing this journal as it was.

        Usable wherever Optuna reads a storage (``optuna.load_study``,
        ``study.trials_dataframe()``, ``optuna.visualization``); writes raise
        :class:`~optuna_journal.errors.ReadOnlyError`.

        Args:
            position: Show the state after this many records (the header is record 0, so
                ``position=1`` is the empty journal; :attr:`position` is the present).
            time: Show the state after every record written before the first record written
                after this moment (naive datetimes are local time, as Optuna's are).

        Raises:
            ValueError: Not exactly one of ``position`` and ``time`` is given.
        """
        return JournalView(self._backend, position=position, time=time)

    def history(self, *, study_id: int | None = None, trial_id: int | None = None) -> list[Entry]:
        """Every record that touched a study (its trials' creation included) or a trial, in
        log order, each with its number and what replay made of it (a rejection says why)."""
        return log.history(self._backend, study_id=study_id, trial_id=trial_id)

    def snapshot(self) -> int:
        """Save a snapshot of the state as of the last record applied; return its position.

        Snapshots are also taken automatically, every ``snapshot_every`` records while the log
        is short and ever more rarely as it grows (see
        :func:`optuna_journal.replay.snapshot.is_due`).
        """
        with self._lock:
            self._sync()
            return self._save_snapshot()

    def _save_snapshot(self) -> int:
        assert self._head is not None and self._cursor is not None
        data = snapshot.encode(self._state, self._head, self._cursor)
        self._backend.save_snapshot(data)
        _logger.debug(
            f"Saved a snapshot of {self._backend.location} at record {self._state.position}."
        )
        return self._state.position

    def _restore(self) -> None:
        """Start from the log's snapshot, if it has a usable one."""
        data = self._backend.load_snapshot()
        if data is None:
            return
        location = self._backend.location
        try:
            with _gc_paused(True):
                state, cursor, head = snapshot.load(data, self._backend)
        except snapshot.SnapshotError as err:
            _logger.warning(
                f"{location}: ignoring its snapshot, which is {err}; replaying the whole log."
            )
            return
        self._header = codec.decode_header(head, location)
        self._head, self._state, self._cursor = head, state, cursor

    # Log plumbing.

    def _sync(self, mine: AnyRecord | None = None) -> Verdict:
        """Apply the new tail of the log; return the verdict of the record ``mine`` in it."""
        try:
            return self._apply_tail(mine)
        except LogReplacedError:
            pass
        # Compacted: the new log replays to the same state. Start over from it, but keep to
        # the old one unless the new one holds every record this process has applied.
        _logger.info(f"{self._backend.location} was replaced (compacted); replaying the new log.")
        before = self._state, self._cursor, self._header, self._head
        self._state, self._cursor, self._header, self._head = State(), None, None, None
        try:
            self._restore()
            verdict = self._apply_tail(mine)
            _check_holds(self._backend.location, before[0].last_rid, self._state.last_rid)
        except BaseException:
            self._state, self._cursor, self._header, self._head = before
            raise
        return verdict

    def _apply_tail(self, mine: AnyRecord | None) -> Verdict:
        location = self._backend.location
        verdict: Verdict = None
        found = mine is None
        mine_at = 0
        paused = False
        with contextlib.ExitStack() as stack:
            for batch in self._backend.read(self._cursor):
                if len(batch.payloads) >= _LARGE_BATCH and not paused:
                    stack.enter_context(_gc_paused(True))  # until the whole tail is applied
                    paused = True
                if found:
                    self._apply_batch(batch)
                else:
                    assert mine is not None
                    verdict, found, mine_at = self._apply_batch(batch, mine)
                self._cursor = batch.cursor
        if not found:
            raise JournalError(
                f"{location}: a record this process appended is missing when the log is read "
                "back: the log was compacted, or rewritten by another tool, while this process "
                "was between writing it and reading it back"
            )
        if snapshot.is_due(mine_at, self._snapshot_every):
            try:
                self._save_snapshot()
            except OSError as err:  # the write itself succeeded; a snapshot only saves time
                _logger.warning(f"{location}: could not save a snapshot: {err}")
        return verdict

    def _apply_batch(
        self, batch: Batch, mine: AnyRecord | None = None
    ) -> tuple[Verdict, bool, int]:
        """Apply one batch; with ``mine``, return its verdict, whether it was found and the
        position after it. The decoded records die on return, before the GC may run again."""
        state = self._state
        location = self._backend.location
        payloads, header = batch.payloads, self._header
        if header is None:
            header = codec.decode_header(payloads[0], location)
            payloads = payloads[1:]
        # Decode the whole batch before applying any: on error, state and cursor agree.
        records = codec.decode(payloads, location, batch.cursor.records - len(payloads))
        if self._header is None:
            self._header, self._head = header, batch.payloads[0]
            state.position += 1
        if mine is None:
            apply_all(state, records)
            return None, True, 0
        verdict: Verdict = None
        found, mine_at = False, 0
        for record in records:
            result = apply(state, record)
            if not found and record.rid == mine.rid and record.writer == mine.writer:
                verdict, found, mine_at = result, True, state.position
        return verdict, found, mine_at

    def _new(self, kind: type[R], at: datetime | None = None, **fields: Any) -> R:
        writer, rid = next_rid()
        return kind(writer=writer, rid=rid, at=at or datetime.now(timezone.utc), **fields)

    def _writable(self) -> None:
        """Raise unless this storage may write (a view of the past may not)."""

    def _write(self, record: AnyRecord) -> Verdict:
        self._writable()
        payload = codec.encode(record)
        with self._lock:
            sync = self._durability == "append" or not isinstance(record, _WITHIN_TRIAL)
            while True:
                try:
                    self._backend.append([payload], sync=sync, after=self._cursor)
                    break
                except LogReplacedError:  # compacted since this process read it: catch up
                    self._sync()
            verdict = self._sync(record)
        if isinstance(verdict, Rejected):
            raise _ERRORS[verdict.reason](verdict.message)
        return verdict

    # Studies.

    def create_new_study(
        self, directions: Sequence[StudyDirection], study_name: str | None = None
    ) -> int:
        if not directions:
            raise ValueError("a study needs at least one direction")
        for d in directions:
            if d not in (StudyDirection.MINIMIZE, StudyDirection.MAXIMIZE):
                raise ValueError(f"directions must be MINIMIZE or MAXIMIZE, got {d!r}")
        if study_name is None:
            study_name = DEFAULT_STUDY_NAME_PREFIX + str(uuid.uuid4())
        _checked_str(study_name, "a study name", "cannot name a study")
        record = self._new(
            StudyCreated, name=study_name, directions=tuple(Direction(d.value) for d in directions)
        )
        study_id = self._write(record)
        assert isinstance(study_id, int)
        _logger.info(f"A new study created in Journal with name: {study_name}")
        return study_id

    def delete_study(self, study_id: int) -> None:
        self._write(self._new(StudyDeleted, study_id=study_id))

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        value = _checked_attr(key, value)
        self._write(self._new(StudyUserAttrSet, study_id=study_id, key=key, value=value))

    def set_study_system_attr(self, study_id: int, key: str, value: JSONSerializable) -> None:
        value = _checked_attr(key, value)
        artifact = attr_record(key, value)
        if artifact is not None:
            self._write(self._new(artifact[0], study_id=study_id, **artifact[1]))
            return
        self._write(self._new(StudySystemAttrSet, study_id=study_id, key=key, value=value))

    def get_study_id_from_name(self, study_name: str) -> int:
        with self._lock:
            self._sync()
            try:
                return self._state.study_ids[study_name]
            except KeyError:
                raise KeyError(f"No study with name '{study_name}' exists.") from None

    def get_study_name_from_id(self, study_id: int) -> str:
        with self._lock:
            self._sync()
            return self._state.study(study_id).name

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        with self._lock:
            self._sync()
            return list(self._state.study(study_id).directions)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        with self._lock:
            self._sync()
            return dict(self._state.study(study_id).user_attrs)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        with self._lock:
            self._sync()
            return dict(self._state.study(study_id).system_attrs)

    def get_all_studies(self) -> list[FrozenStudy]:
        with self._lock:
            self._sync()
            return [study.freeze() for study in self._state.studies.values()]

    # Trials.

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        if template_trial is None:
            now = datetime.now(timezone.utc)
            record = self._new(TrialCreated, at=now, study_id=study_id, datetime_start=now)
        else:
            t = template_trial
            for key, value in t.user_attrs.items():
                _checked_attr(key, value)
            for key, value in t.system_attrs.items():
                _checked_attr(key, value)
            record = self._new(
                TrialCreated,
                study_id=study_id,
                state=StateCode(t.state.value),
                values=None if t.values is None else tuple(float(v) for v in t.values),
                datetime_start=_utc(t.datetime_start),
                datetime_complete=_utc(t.datetime_complete),
                params={
                    name: Param(
                        internal_value(t.distributions[name], value),
                        to_record(t.distributions[name]),
                    )
                    for name, value in t.params.items()
                },
                user_attrs=dict(t.user_attrs),
                system_attrs=dict(t.system_attrs),
                intermediate_values={
                    int(step): float(v) for step, v in t.intermediate_values.items()
                },
            )
        trial_id = self._write(record)
        assert isinstance(trial_id, int)
        return trial_id

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        record = self._new(
            TrialParamSet,
            trial_id=trial_id,
            name=param_name,
            internal=float(param_value_internal),
            distribution=to_record(distribution),
        )
        self._write(record)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        with self._lock:
            self._sync()
            trials = self._state.study(study_id).trials
            if not 0 <= trial_number < len(trials):
                raise KeyError(f"No trial with {trial_number=} exists in study with {study_id=}.")
            return trials[trial_number].trial_id

    def get_trial_number_from_id(self, trial_id: int) -> int:
        with self._lock:
            self._sync()
            return self._state.trial(trial_id).number

    def get_trial_param(self, trial_id: int, param_name: str) -> float:
        with self._lock:
            self._sync()
            row = self._state.trial(trial_id)
            if param_name not in row.params:
                raise KeyError(f"Trial#{row.number} has no parameter {param_name!r}.")
            dist = self._state.distributions(row)[param_name]
            return float(dist.to_internal_repr(row.params[param_name]))

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        self._writable()
        if state == TrialState.RUNNING:
            # Claiming a trial: if it runs already we lost, and there is nothing to write.
            with self._lock:
                self._sync()
                row = self._state.trial(trial_id)
                if row.state in FINISHED:
                    raise UpdateFinishedTrialError(
                        f"Trial#{row.number} has already finished and can not be updated."
                    )
                if row.state is StateCode.RUNNING:
                    return False
        record = self._new(
            TrialStateSet,
            trial_id=trial_id,
            state=StateCode(state.value),
            values=None if values is None else tuple(float(v) for v in values),
        )
        return bool(self._write(record))

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        record = self._new(
            TrialIntermediateValueSet,
            trial_id=trial_id,
            step=int(step),
            value=float(intermediate_value),
        )
        self._write(record)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        value = _checked_attr(key, value)
        self._write(self._new(TrialUserAttrSet, trial_id=trial_id, key=key, value=value))

    def set_trial_system_attr(self, trial_id: int, key: str, value: JSONSerializable) -> None:
        value = _checked_attr(key, value)
        artifact = attr_record(key, value)
        if artifact is not None:
            self._write(self._new(artifact[0], trial_id=trial_id, **artifact[1]))
            return
        self._write(self._new(TrialSystemAttrSet, trial_id=trial_id, key=key, value=value))

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            self._sync()
            return self._state.frozen_trial(trial_id)

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        with self._lock:
            self._sync()
            with _gc_paused(len(self._state.study(study_id).trials) >= _LARGE_BATCH):
                return self._state.frozen_trials(study_id, states, deep=deepcopy)

    def get_n_trials(
        self, study_id: int, state: tuple[TrialState, ...] | TrialState | None = None
    ) -> int:
        states = (state,) if isinstance(state, TrialState) else state
        with self._lock:
            self._sync()
            return self._state.n_trials(study_id, states)

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        with self._lock:
            self._sync()
            study = self._state.study(study_id)
            if study.counts[StateCode.COMPLETE] == 0 or (
                study.best is None and len(study.directions) == 1
            ):
                raise ValueError("No trials are completed yet.")
            if len(study.directions) > 1:
                raise RuntimeError(
                    "Best trial can be obtained only for single-objective optimization."
                )
            assert study.best is not None
            return self._state.frozen_trial(study.best.trial_id)

    # Heartbeats (Optuna's BaseHeartbeat).

    def record_heartbeat(self, trial_id: int) -> None:
        self._write(self._new(TrialHeartbeat, trial_id=trial_id))

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        assert self._heartbeat_interval is not None
        grace = self._grace_period or 2 * self._heartbeat_interval
        with self._lock:
            self._sync()
            self._state.study(study_id)  # raises KeyError for an unknown study
            now = time.time()
            return [
                trial_id
                for trial_id, row in self._state.beating.items()
                if row.study_id == study_id and now - cast(float, row.heartbeat) > grace
            ]

    def get_heartbeat_interval(self) -> int | None:
        return self._heartbeat_interval

    def get_heartbeat_stale_trial_callback(
        self,
    ) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._heartbeat_stale_trial_callback


class JournalView(JournalStorage):
    """A journal as it was at a position or moment: read-only, and it never moves on.

    Made by :meth:`JournalStorage.at`.
    """

    def __init__(
        self, backend: Backend, *, position: int | None = None, time: datetime | None = None
    ) -> None:
        if (position is None) == (time is None):
            raise ValueError("give exactly one of position and time")
        if position is not None and position < 0:
            raise ValueError(f"position must not be negative, got {position}")
        self._until_position = position
        self._until_time = None if time is None else time.astimezone(timezone.utc)
        super().__init__(backend, snapshot_every=0)

    def _open(self) -> None:
        self._state, self._header, self._head = log.replay_until(
            self._backend, self._until_position, self._until_time
        )

    def _sync(self, mine: AnyRecord | None = None) -> Verdict:
        return None  # the past does not change

    def _writable(self) -> None:
        when = (
            f"record {self._until_position}"
            if self._until_position is not None
            else f"{self._until_time}"
        )
        raise ReadOnlyError(
            f"{self._backend.location} as of {when} is a view of the past; it cannot be written"
        )

    def snapshot(self) -> int:
        self._writable()
        raise AssertionError("unreachable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_view, (self._backend, self._until_position, self._until_time))


def _view(backend: Backend, position: int | None, time: datetime | None) -> JournalView:
    return JournalView(backend, position=position, time=time)


def _reopen(
    backend: Backend,
    snapshot_every: int,
    heartbeat_interval: int | None,
    grace_period: int | None,
    callback: Callable[[optuna.Study, FrozenTrial], None] | None,
    durability: str,
) -> JournalStorage:
    return JournalStorage(
        backend,
        snapshot_every=snapshot_every,
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        heartbeat_stale_trial_callback=callback,
        durability=durability,
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("optuna-journal")
    except PackageNotFoundError:
        return "unknown"
