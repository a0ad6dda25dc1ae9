"""Functions run in spawned child processes by the tests (importable by module name)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
import itertools
import json
import multiprocessing
import os
from pathlib import Path
import random
import signal
import time
import warnings

import optuna
from optuna.trial import TrialState

from optuna_journal import (
    FileBackend,
    JournalError,
    JournalStorage,
    LockLostError,
    LogTruncatedError,
    open_backend,
    open_storage,
)
from optuna_journal.backends.flock import FlockLock
from optuna_journal.backends.lock import LeaseLock


def run_spawned(target: object, args_per_worker: list[tuple[object, ...]]) -> None:
    """Run ``target`` in one spawned process per argument tuple; all must exit 0."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=args) for args in args_per_worker]  # type: ignore[arg-type]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
    assert [p.exitcode for p in procs] == [0] * len(procs), "a worker raised or died"


def optimize_through(
    location: str,
    study_name: str,
    n_trials: int,
    finished: Path,
    disrupt: Callable[[], None],
) -> None:
    """Four spawned processes optimize ``n_trials`` each on a new study; ``disrupt`` runs
    once 40 trials have finished. Every trial must then be complete, numbered once, and
    every acknowledged one there (``finished`` collects the acknowledgements)."""
    optuna.create_study(study_name=study_name, storage=open_storage(location))
    _four_through(
        optimize, (location, study_name, n_trials, None, str(finished)), finished, disrupt
    )
    total = 4 * n_trials
    trials = optuna.load_study(study_name=study_name, storage=open_storage(location)).trials
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: total}
    assert sorted(t.number for t in trials) == list(range(total))
    acknowledged = Counter(int(n) for n in finished.read_text().split())
    assert sorted(acknowledged) == list(range(total)) and set(acknowledged.values()) == {1}


def optimize_reopening_through(
    location: str,
    study_name: str,
    n_trials: int,
    finished: Path,
    disrupt: Callable[[], None],
) -> tuple[Counter[int], list[optuna.trial.FrozenTrial]]:
    """:func:`optimize_through` with :func:`optimize_reopening`: a failover may stop a
    process, which opens the journal anew. Returns how often each trial number was
    acknowledged, and the trials."""
    optuna.create_study(study_name=study_name, storage=open_storage(location))
    _four_through(
        optimize_reopening, (location, study_name, n_trials, str(finished)), finished, disrupt
    )
    acknowledged = Counter(int(n) for n in finished.read_text().split())
    assert sum(acknowledged.values()) == 4 * n_trials
    trials = optuna.load_study(study_name=study_name, storage=open_storage(location)).trials
    return acknowledged, trials


def _four_through(
    target: Callable[..., None],
    args: tuple[object, ...],
    finished: Path,
    disrupt: Callable[[], None],
) -> None:
    """Run ``target(*args)`` in four spawned processes; ``disrupt`` runs once 40 trials are
    acknowledged (in ``finished``). All must exit 0."""
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=target, args=args) for _ in range(4)]
    for p in workers:
        p.start()
    deadline = time.monotonic() + 120
    while len(finished.read_text().split()) < 40 if finished.exists() else True:
        assert time.monotonic() < deadline and all(p.is_alive() for p in workers)
        time.sleep(0.01)
    disrupt()
    for p in workers:
        p.join(timeout=300)
    assert [p.exitcode for p in workers] == [0] * 4


def hold_lock(lock_path: str, lease: float, seconds: float, ready: str) -> None:
    """Take the lock (a flock if ``lease`` is 0), say so by creating ``ready``, and hold it
    for ``seconds``."""
    lock = FlockLock(lock_path) if lease == 0 else LeaseLock(lock_path, lease=lease)
    with lock.hold():
        Path(ready).touch()
        time.sleep(seconds)


def optimize(
    location: str,
    study_name: str,
    n_trials: int,
    executed: str | None = None,
    finished: str | None = None,
) -> None:
    """Run ``n_trials`` of a cheap objective on the journal at ``location``.

    Appends the number of each trial it starts to ``executed`` and of each trial whose
    completion was acknowledged to ``finished``.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=study_name,
        storage=open_storage(location),
        sampler=optuna.samplers.RandomSampler(),
    )

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -10, 10)
        trial.report(x, 0)
        if executed is not None:
            _append_line(executed, str(trial.number))
        return x * x

    def acknowledged(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if finished is not None:
            _append_line(finished, str(trial.number))

    study.optimize(objective, n_trials=n_trials, callbacks=[acknowledged])


def publish_trials(location: str, study_name: str, n_trials: int, told: str) -> None:
    """Run ``n_trials`` of a cheap objective, one every 50 ms; append ``number time`` to
    ``told`` once each trial's completion is acknowledged."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=open_storage(location))

    def objective(trial: optuna.Trial) -> float:
        time.sleep(0.05)
        return trial.suggest_float("x", -10, 10) ** 2

    def acknowledged(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        _append_line(told, f"{trial.number} {time.time()}")

    study.optimize(objective, n_trials=n_trials, callbacks=[acknowledged])


def optimize_reopening(location: str, study_name: str, n_trials: int, finished: str) -> None:
    """Have ``n_trials`` trials acknowledged (each number to ``finished``), opening the journal
    anew whenever it stops this process because the log lost records it had read."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    acknowledged = 0
    while acknowledged < n_trials:
        study = optuna.load_study(study_name=study_name, storage=open_storage(location))
        try:
            while acknowledged < n_trials:
                trial = study.ask()
                x = trial.suggest_float("x", -10, 10)
                trial.report(x, 0)
                study.tell(trial, x * x)
                _append_line(finished, str(trial.number))
                acknowledged += 1
        except LogTruncatedError:
            continue


def _append_line(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())  # one small O_APPEND write: lines never interleave
    finally:
        os.close(fd)


def write_until_killed(path: str, acks: str, lock: str, lease: float) -> None:
    """Append forever, snapshotting often; log each acknowledged key to ``acks``.

    Each round writes a blob of random size (so a kill often lands mid-frame) that overwrites
    the last one, then a small record under a new key, acknowledged once written.
    """
    storage = JournalStorage(FileBackend(path, lock, lock_lease=lease), snapshot_every=25)
    study_id = storage.get_study_id_from_name("crash")
    fd = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    rng = random.Random(os.getpid())
    while True:
        storage.set_study_system_attr(study_id, "blob", "v" * rng.choice([1, 1_000, 100_000]))
        key = f"{os.getpid()}-{time.monotonic_ns()}"
        storage.set_study_user_attr(study_id, key, 1)
        os.write(fd, f"{key}\n".encode())  # in the page cache: survives SIGKILL


def beat_until_killed(location: str, study_name: str, ready: str) -> None:
    """Run one trial with heartbeats every second; say so by creating ``ready``, then hang
    until killed."""
    storage = JournalStorage(FileBackend(location), heartbeat_interval=1)
    study = optuna.load_study(study_name=study_name, storage=storage)

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0, 1)
        Path(ready).touch()
        time.sleep(600)
        return 0.0

    study.optimize(objective, n_trials=1)


def quadratic(trial: optuna.Trial) -> float:
    """A cheap objective for the Dask workers (importable by module name)."""
    x = trial.suggest_float("x", -10, 10)
    return (x - 2) ** 2


def run_trials_until_killed(path: str, acks: str) -> None:
    """Run trials on a journal with ``durability="trial"`` forever, logging each acknowledged
    write to ``acks`` as ``trial_id kind``; every fifth trial is left running."""
    storage = JournalStorage(FileBackend(path), durability="trial", snapshot_every=25)
    study_id = storage.get_study_id_from_name("crash")
    fd = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    dist = optuna.distributions.FloatDistribution(0, 1)
    for n in itertools.count():
        trial_id = storage.create_new_trial(study_id)
        storage.set_trial_param(trial_id, "x", 0.5, dist)
        os.write(fd, f"{trial_id} param\n".encode())
        for step in range(3):
            storage.set_trial_intermediate_value(trial_id, step, float(step))
            os.write(fd, f"{trial_id} step{step}\n".encode())
        if n % 5:
            storage.set_trial_state_values(trial_id, optuna.trial.TrialState.COMPLETE, [0.5])
            os.write(fd, f"{trial_id} complete\n".encode())


def optimize_through_proxy(port: int, study_name: str, n_trials: int) -> None:
    """Run ``n_trials`` of a cheap objective through Optuna's gRPC storage proxy at ``port``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    storage = optuna.storages.GrpcStorageProxy(host="127.0.0.1", port=port)
    study = optuna.load_study(study_name=study_name, storage=storage)
    study.optimize(quadratic, n_trials=n_trials)
    storage.close()


def _self_checking_bytes(rng: random.Random) -> bytes:
    """Random bytes whose first 32 are the SHA-256 of the rest: a reader can tell a whole
    artifact from a part of one without asking anyone."""
    import hashlib

    body = rng.randbytes(rng.randrange(1, 256 * 1024))
    return hashlib.sha256(body).digest() + body


def upload_artifacts(location: str, store_path: str, study_name: str, n: int, seed: int) -> None:
    """Upload ``n`` self-checking artifacts to trials of the study, one per trial."""
    from optuna.artifacts import upload_artifact

    from optuna_journal.artifacts import JournalArtifactStore

    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = random.Random(seed)
    store = JournalArtifactStore(store_path)
    study = optuna.load_study(study_name=study_name, storage=open_storage(location))
    source = Path(store_path).parent / f"upload-{seed}.bin"
    for _ in range(n):
        trial = study.ask()
        source.write_bytes(_self_checking_bytes(rng))
        upload_artifact(artifact_store=store, file_path=str(source), study_or_trial=trial)
        study.tell(trial, 0.0)


def download_artifacts_until(store_path: str, stop: str, report: str) -> None:
    """Read every artifact the store holds, again and again, until ``stop`` exists; check
    each is whole; write how many reads there were to ``report``."""
    import hashlib

    from optuna_journal.artifacts import JournalArtifactStore

    store = JournalArtifactStore(store_path)
    reads = 0
    while not os.path.exists(stop):
        for artifact_id in store.listing()[0]:  # its checksum is there before it is
            with store.open_reader(artifact_id) as f:
                data = f.read()
            assert hashlib.sha256(data[32:]).digest() == data[:32], f"partial {artifact_id}"
            reads += 1
    Path(report).write_text(str(reads))


def write_artifact_slowly(store_path: str, artifact_id: str, started: str) -> None:
    """Write an artifact whose bytes come slowly, saying when the first are written; the
    test kills the process mid-write."""
    import io

    from optuna_journal.artifacts import JournalArtifactStore

    class Slow(io.RawIOBase):
        def __init__(self) -> None:
            self.calls = 0

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            self.calls += 1
            if self.calls == 2:
                Path(started).touch()
            time.sleep(0.05)
            return b"x" * 65536

    JournalArtifactStore(store_path).write(artifact_id, Slow())  # type: ignore[arg-type]


def soak_storage(location: str, grace: int) -> JournalStorage:
    """The soak's storage: heartbeats every second; a trial whose beats stopped for ``grace``
    seconds is failed and retried (by whichever process next starts a trial)."""
    return JournalStorage(
        open_backend(location),
        heartbeat_interval=1,
        grace_period=grace,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=10
        ),
    )


def soak_objective(trial: optuna.Trial) -> float:
    """Five reported steps with a median pruner behind them, and an attr per trial."""
    x = trial.suggest_float("x", -10, 10)
    trial.set_user_attr("pid", os.getpid())
    for step in range(5):
        time.sleep(0.005)
        trial.report(x * x + 5 - step, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return x * x


def soak_worker(location: str, study_name: str, target: int, acks: str, grace: int) -> None:
    """Run soak trials until the study holds ``target`` complete or pruned trials; append
    ``number STATE`` to ``acks`` once each trial's end is acknowledged."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=study_name,
        storage=soak_storage(location, grace),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
    )
    done = (TrialState.COMPLETE, TrialState.PRUNED)

    def acknowledged(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        _append_line(acks, f"{trial.number} {trial.state.name}")
        if len(study.get_trials(deepcopy=False, states=done)) >= target:
            study.stop()

    if len(study.get_trials(deepcopy=False, states=done)) < target:
        study.optimize(soak_objective, callbacks=[acknowledged])


def freeze_while_holding(path: str, lease: float, acks: str, lost: str, done: str) -> None:
    """Append under the lease lock; twice, SIGSTOP itself while holding it, at the last check
    before a write: once in an append, once in a snapshot.

    The test resumes it (SIGCONT) only after other processes have taken the lock over and
    appended. Each acknowledged key goes to ``acks``; the key of an append the lock check
    refused goes to ``lost`` (with ``snapshot`` for the refused snapshot).
    """
    backend = FileBackend(path, "lease", lock_lease=lease)
    storage = JournalStorage(backend, snapshot_every=0)
    study_id = storage.get_study_id_from_name("crash")
    lock = backend.lock
    assert isinstance(lock, LeaseLock)
    check = lock.verify
    armed = [False]

    def stop_then_check() -> None:
        if armed[0]:
            armed[0] = False
            os.kill(os.getpid(), signal.SIGSTOP)  # frozen holding the lock, past its lease
        check()

    lock.verify = stop_then_check  # type: ignore[method-assign]
    for round_ in range(3):
        for _ in range(5):
            key = f"{os.getpid()}-{time.monotonic_ns()}"
            storage.set_study_user_attr(study_id, key, round_)
            _append_line(acks, key)
        if round_ == 2:
            break
        armed[0] = True
        key = f"{os.getpid()}-{time.monotonic_ns()}"
        try:
            if round_ == 0:
                storage.set_study_user_attr(study_id, key, "frozen")
            else:
                storage.snapshot()
        except LockLostError as err:
            assert "taken over" in str(err), err
            _append_line(lost, key if round_ == 0 else "snapshot")
        else:
            _append_line(acks, key)
    Path(done).touch()


def optimize_until_told(
    user: int, location: str, study_name: str, acks: str, errors: str, stop: str
) -> None:
    """As ``user`` (a uid; 0 stays root), optimize until ``stop`` exists, starting again
    after each ``OSError`` of the storage (a full disk, a log made read-only). Append ``pid
    number`` to ``acks`` for each acknowledged trial, and ``pid named|unnamed`` to ``errors``
    for each error, by whether it names the journal."""
    if user:
        os.setgid(user)
        os.setuid(user)
    optuna.logging.set_verbosity(optuna.logging.CRITICAL)
    storage = JournalStorage(
        FileBackend(location), snapshot_every=50, heartbeat_interval=1, grace_period=5
    )
    study = optuna.load_study(study_name=study_name, storage=storage)
    pid = os.getpid()

    def acknowledged(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        _append_line(acks, f"{pid} {trial.number}")
        if os.path.exists(stop):
            study.stop()

    while not os.path.exists(stop):
        try:
            study.optimize(quadratic, callbacks=[acknowledged])
        except Exception as err:
            # Optuna's _run_trial hides an error of the final tell behind its own
            # AssertionError("Should not reach.") (the trial is still RUNNING): look behind it.
            cause = err if isinstance(err, OSError) else err.__context__
            if not isinstance(cause, OSError):
                raise
            _append_line(errors, f"{pid} {'named' if location in str(cause) else 'unnamed'}")
            time.sleep(0.05)


def optimize_until_error(location: str, study_name: str, acks: str, errors: str) -> None:
    """Optimize until the storage raises a JournalError; append ``pid number`` to ``acks``
    for each acknowledged trial, then ``[kind, message]`` (JSON) of the error to ``errors``."""
    optuna.logging.set_verbosity(optuna.logging.CRITICAL)
    storage = JournalStorage(FileBackend(location), snapshot_every=50)
    study = optuna.load_study(study_name=study_name, storage=storage)
    pid = os.getpid()

    def acknowledged(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        _append_line(acks, f"{pid} {trial.number}")

    try:
        study.optimize(quadratic, callbacks=[acknowledged])
    except Exception as err:
        cause = err if isinstance(err, JournalError) else err.__context__  # see above
        if not isinstance(cause, JournalError):
            raise
        _append_line(errors, json.dumps([type(cause).__name__, str(cause)]))
