"""``optuna-journal bench``: our storages against Optuna's, side by side, in one run.

Every workload runs each storage in turn, repeated (the storages interleaved, so drift of
the machine hits all alike), and reports the median, the range, and the ratio to Optuna's
``JournalStorage`` on ``JournalFileBackend`` (the reference, 1.0; for the Dask workloads,
``optuna_integration.DaskStorage()``). Ratios are "times better": for rates ours /
reference, for durations reference / ours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
import contextlib
from dataclasses import dataclass, field
import fcntl
import json
import multiprocessing
import os
from pathlib import Path
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, TypeVar
import weakref

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.storages import BaseStorage
from optuna.storages.journal._base import BaseJournalBackend, BaseJournalSnapshot
from optuna.trial import TrialState
from tqdm import tqdm

from optuna_journal.backends import frames
from optuna_journal.backends.base import Backend
from optuna_journal.backends.file import FileBackend
from optuna_journal.backends.memory import MemoryBackend
from optuna_journal.storage import JournalStorage

T = TypeVar("T")

REFERENCE = "optuna-file"
DASK_REFERENCE = (
    "optuna-dask"  # optuna_integration.DaskStorage(): InMemoryStorage on the scheduler
)


@dataclass
class Sizes:
    """How big each workload is."""

    lifecycle_trials: int = 300
    tpe_trials: int = 300
    read_trials: int = 10_000
    concurrency_trials: int = 250  # per process, 4 processes
    cold_trials: int = 20_000
    memory_trials: int = 50_000
    growth_trials: int = 10_000
    dask_trials: int = 100  # per task, 4 tasks
    dask_read_trials: int = 5_000
    scale_trials: int = 100_000  # cold open, memory and reads of one large study, files only
    repeat: int = 3

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            lifecycle_trials=30,
            tpe_trials=30,
            read_trials=500,
            concurrency_trials=15,
            cold_trials=1_000,
            memory_trials=1_000,
            growth_trials=200,
            dask_trials=10,
            dask_read_trials=300,
            scale_trials=2_000,
            repeat=2,
        )


@dataclass
class Result:
    workload: str
    storage: str
    unit: str
    higher_is_better: bool
    samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


# The synthetic trial every journal workload writes: 3 floats and 1 categorical, 5 reports,
# 1 user attr, then COMPLETE: the shape of the lifecycle objective.

_X = FloatDistribution(-10, 10)
_Z = FloatDistribution(1e-3, 1, log=True)
_C = CategoricalDistribution(["relu", "tanh", "gelu"])


def fill(storage: BaseStorage, n_trials: int, study_name: str = "bench") -> None:
    """Write ``n_trials`` finished trials through the storage API, as an optimisation would."""
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], study_name)
    for i in range(n_trials):
        trial_id = storage.create_new_trial(study_id)
        storage.set_trial_param(trial_id, "x", (i % 19) - 9.0, _X)
        storage.set_trial_param(trial_id, "y", (i % 7) - 3.0, _X)
        storage.set_trial_param(trial_id, "z", 0.5, _Z)
        storage.set_trial_param(trial_id, "act", i % 3, _C)
        for step in range(5):
            storage.set_trial_intermediate_value(trial_id, step, 1.0 / (step + 1 + i % 11))
        storage.set_trial_user_attr(trial_id, "seed", i)
        storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [float(i % 101)])


# The storages, by name; each made afresh for every round at a new location.

STORAGES = ["optuna-file", "ours-file", "optuna-redis", "ours-redis", "sqlite", "inmemory"]
# Ours with durability="trial": timed only where it writes differently (reads are the same).
TRIAL_DURABILITY = "ours-file-trial"
# The ceilings of a storage that makes each write durable before it returns, on this machine:
# InMemoryStorage plus, for every write, one fsync'd append to a shared file, or one XADD to
# Redis. Timed where trials are written (lifecycle, tpe, concurrency).
BOUNDS = {"fsync-bound": "ours-file", "redis-bound": "ours-redis"}


class _Bound(optuna.storages.InMemoryStorage):
    """``InMemoryStorage`` that first makes each write durable in the least way possible: a
    record-sized append, fsynced to a file or acknowledged by Redis. No storage with durable
    appends can beat it here; our journal's distance to it is what its own work costs.

    In concurrency each process keeps its own study in memory (nothing is shared but the
    log), so the ceiling there also leaves out reading the other processes' trials."""

    _RECORD = bytes(96)  # our journal's mean frame, header included, is 95 bytes

    def __init__(self, persist: Callable[[bytes], object]) -> None:
        super().__init__()
        self._persist = persist

    @staticmethod
    def in_file(path: str) -> _Bound:
        """Append as a log shared by processes must, so that a crash never leaves a hole in
        it: under an exclusive ``flock``, fsynced before the lock is released."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        lock = os.open(path + ".flock", os.O_RDWR | os.O_CREAT, 0o644)

        def persist(record: bytes) -> None:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                os.write(fd, record)
                os.fsync(fd)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

        storage = _Bound(persist)
        weakref.finalize(storage, os.close, fd)
        weakref.finalize(storage, os.close, lock)
        return storage

    @staticmethod
    def in_redis(url: str, key: str) -> _Bound:
        import redis

        client = redis.Redis.from_url(url)
        return _Bound(lambda record: client.xadd(key, {"r": record}))


def _durable_first(name: str) -> Callable[..., Any]:
    write = getattr(optuna.storages.InMemoryStorage, name)

    def durable(self: _Bound, *args: Any, **kwargs: Any) -> Any:
        self._persist(self._RECORD)
        return write(self, *args, **kwargs)

    return durable


# Every write of BaseStorage, made durable first.
for _write in (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "create_new_trial",
    "set_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
):
    setattr(_Bound, _write, _durable_first(_write))


def make(kind: str, where: str, redis_url: str | None) -> BaseStorage:
    """A storage of ``kind`` at ``where`` (a path, or a name on the Redis server)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if kind == "optuna-file":
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(where))
    if kind == "ours-file":
        return JournalStorage(FileBackend(where))
    if kind == TRIAL_DURABILITY:
        return JournalStorage(FileBackend(where), durability="trial")
    if kind == "optuna-redis":
        import warnings

        from optuna.storages.journal import JournalRedisBackend

        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.JournalStorage(JournalRedisBackend(str(redis_url), prefix=where))
    if kind == "ours-redis":
        from optuna_journal.backends.redis import RedisBackend

        return JournalStorage(RedisBackend(str(redis_url), name=where))
    if kind == "sqlite":
        return optuna.storages.RDBStorage(f"sqlite:///{where}")
    if kind == "inmemory":
        return optuna.storages.InMemoryStorage()
    if kind == "fsync-bound":
        return _Bound.in_file(where)
    if kind == "redis-bound":
        return _Bound.in_redis(str(redis_url), where)
    raise ValueError(f"unknown storage {kind!r}")


def _kinds(redis_url: str | None, writes: bool = False, bounds: bool = False) -> list[str]:
    """The storages to run: Redis ones if there is a server; with ``writes``, also ours with
    ``durability="trial"``; with ``bounds``, also the ceilings of durable appends."""
    kinds = STORAGES + [TRIAL_DURABILITY] if writes else STORAGES
    kinds = kinds + list(BOUNDS) if bounds else kinds
    return [k for k in kinds if redis_url is not None or "redis" not in k]


def objective(trial: optuna.Trial) -> float:
    """The lifecycle objective: 3 floats and 1 categorical, 5 reports, 1 user attr."""
    x = trial.suggest_float("x", -10, 10)
    y = trial.suggest_float("y", -10, 10)
    z = trial.suggest_float("z", 1e-3, 1, log=True)
    act = trial.suggest_categorical("act", ["relu", "tanh", "gelu"])
    for step in range(5):
        trial.report(x * x + y * y + z / (step + 1), step)
    trial.set_user_attr("act", act)
    return x * x + y * y + z


def _rate(study: optuna.Study, n: int) -> float:
    """Trials/s of ``n`` more trials of ``study``."""
    start = time.perf_counter()
    study.optimize(objective, n_trials=n)
    return n / (time.perf_counter() - start)


def bench_optimize(sizes: Sizes, workdir: str, redis_url: str | None) -> list[Result]:
    """lifecycle (RandomSampler) and tpe (TPESampler): trials/s of study.optimize, and how
    near ours comes to the ceiling of durable appends (see :class:`_Bound`)."""
    results: list[Result] = []
    for workload, n, sampler in [
        ("lifecycle", sizes.lifecycle_trials, optuna.samplers.RandomSampler),
        ("tpe", sizes.tpe_trials, optuna.samplers.TPESampler),
    ]:
        rows = {
            k: Result(workload, k, "trials/s", higher_is_better=True)
            for k in _kinds(redis_url, writes=True, bounds=True)
        }
        for round_ in _progress(range(sizes.repeat), workload):
            for kind, result in rows.items():
                where = os.path.join(workdir, f"{workload}-{kind}-{round_}")
                storage = make(kind, where, redis_url)
                study = optuna.create_study(storage=storage, sampler=sampler(seed=round_))
                result.samples.append(_rate(study, n))
        _note_bounds(rows)
        results += rows.values()
    return results


def _note_bounds(rows: dict[str, Result]) -> None:
    """Note beside each of our journals how near it came to its ceiling."""
    for bound, ours in BOUNDS.items():
        if bound in rows and ours in rows and not rows[ours].note:
            share = rows[ours].median / rows[bound].median
            rows[ours].note = f"{share:.0%} of {bound}"


def bench_growth(sizes: Sizes, workdir: str, redis_url: str | None) -> list[Result]:
    """The lifecycle rate of the first tenth of a study and of its last: reads and replay must
    not slow down as a study grows. The last tenth runs on a study that holds the other nine
    tenths already (written in bulk, replayed before the clock starts), in slices taken in
    turn with the first tenth's, so that drift of the machine hits both alike."""
    n = sizes.growth_trials
    tenth = n // 10
    slices = 10
    results: list[Result] = []
    kinds = [k for k in _kinds(redis_url) if k in ("optuna-file", "ours-file", "ours-redis")]
    for kind in _progress(kinds, "growth", unit="storage"):
        fresh = make(kind, os.path.join(workdir, f"growth-new-{kind}"), redis_url)
        grown = _prepared(kind, n - tenth, workdir, redis_url, name="growth")
        studies = {
            "first": optuna.create_study(storage=fresh, sampler=optuna.samplers.RandomSampler(0)),
            "last": optuna.load_study(
                study_name="bench", storage=grown, sampler=optuna.samplers.RandomSampler(1)
            ),
        }
        elapsed = dict.fromkeys(studies, 0.0)
        for _ in range(slices):
            for which, study in studies.items():
                start = time.perf_counter()
                study.optimize(objective, n_trials=tenth // slices)
                elapsed[which] += time.perf_counter() - start
        done = slices * (tenth // slices)
        first = Result(f"growth, trials 0-{tenth}", kind, "trials/s", higher_is_better=True)
        last = Result(f"growth, trials {n - tenth}-{n}", kind, "trials/s", higher_is_better=True)
        first.samples.append(done / elapsed["first"])
        last.samples.append(done / elapsed["last"])
        last.note = f"{first.median / last.median:.2f}x slower than the first tenth"
        results += [first, last]
    return sorted(results, key=lambda r: r.workload)


def _prepared(
    kind: str, n: int, workdir: str, redis_url: str | None, name: str = "reads"
) -> BaseStorage:
    """A storage holding an ``n``-trial study "bench", written in bulk where that is possible
    (at a location of its own for each ``name``)."""
    where = os.path.join(workdir, f"{name}-{kind}")
    if kind == "ours-file":
        _copy(_our_payloads(n), FileBackend(where), snapshot=False)
        return make(kind, where, redis_url)
    if kind == "optuna-file":
        with open(where, "w") as f:
            f.writelines(log + "\n" for log in _optuna_logs(n).logs)
        return make(kind, where, redis_url)
    storage = make(kind, where, redis_url)
    if kind in ("sqlite", "optuna-redis", "ours-redis"):
        source = optuna.storages.InMemoryStorage()
        fill(source, n)
        study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "bench")
        for trial in source.get_all_trials(source.get_study_id_from_name("bench")):
            storage.create_new_trial(study_id, template_trial=trial)
    else:
        fill(storage, n)
    return storage


_READS: dict[str, Callable[[BaseStorage, int, list[int]], object]] = {
    "get_all_trials": lambda s, sid, ids: s.get_all_trials(sid, deepcopy=False),
    "get_trial": lambda s, sid, ids: s.get_trial(ids[len(ids) // 3]),
    "get_best_trial": lambda s, sid, ids: s.get_best_trial(sid),
    "get_n_trials": lambda s, sid, ids: s.get_n_trials(sid),
}


def bench_reads(
    sizes: Sizes,
    workdir: str,
    redis_url: str | None,
    n: int | None = None,
    kinds: list[str] | None = None,
    calls: list[str] | None = None,
    suffix: str = "",
) -> list[Result]:
    """Reads on a prepared study of ``n`` trials (``sizes.read_trials``): get_all_trials
    (deepcopy=False), get_trial, get_best_trial, get_n_trials (or ``calls``); operations per
    second, each timed for about 0.3 s."""
    n = sizes.read_trials if n is None else n
    chosen = {name: _READS[name] for name in (calls or _READS)}
    kinds = _kinds(redis_url) if kinds is None else kinds
    storages = {k: _prepared(k, n, workdir, redis_url) for k in kinds}
    rows = {
        (c, k): Result(c + suffix, k, "ops/s", higher_is_better=True)
        for c in chosen
        for k in storages
    }
    for _ in _progress(range(sizes.repeat), "reads" + suffix):
        for kind, storage in storages.items():
            study_id = storage.get_study_id_from_name("bench")
            ids = [t._trial_id for t in storage.get_all_trials(study_id, deepcopy=False)]
            for name, call in chosen.items():
                done, start = 0, time.perf_counter()
                while time.perf_counter() - start < 0.3:
                    call(storage, study_id, ids)
                    done += 1
                rows[name, kind].samples.append(done / (time.perf_counter() - start))
    return list(rows.values())


def _worker(kind: str, where: str, redis_url: str | None, n: int, ready: Any) -> None:
    ready.wait()  # imports are done: start together, once every worker is here
    storage = make(kind, where, redis_url)
    sampler = optuna.samplers.RandomSampler()
    if kind in BOUNDS:  # a ceiling: a study of its own in memory, appends to the shared log
        study = optuna.create_study(storage=storage, study_name="bench", sampler=sampler)
    else:
        study = optuna.load_study(study_name="bench", storage=storage, sampler=sampler)
    study.optimize(objective, n_trials=n)


def bench_concurrency(sizes: Sizes, workdir: str, redis_url: str | None) -> list[Result]:
    """4 spawned processes share one storage: total trials/s from the moment all four have
    started (Python's start-up and imports are not the storage's work); the run is checked."""
    ctx = multiprocessing.get_context("spawn")
    n = sizes.concurrency_trials
    rows = {
        k: Result("concurrency, 4 processes", k, "trials/s", higher_is_better=True)
        for k in _kinds(redis_url, writes=True, bounds=True)
        if k != "inmemory"
    }
    for round_ in _progress(range(sizes.repeat), "concurrency"):
        for kind, result in rows.items():
            where = os.path.join(workdir, f"mp-{kind}-{round_}")
            # A ceiling's workers each keep a study of their own: there is none to share or check.
            storage = None if kind in BOUNDS else make(kind, where, redis_url)
            if storage is not None:
                optuna.create_study(storage=storage, study_name="bench")
            ready = ctx.Barrier(5)
            procs = [
                ctx.Process(target=_worker, args=(kind, where, redis_url, n, ready))
                for _ in range(4)
            ]
            for p in procs:
                p.start()
            ready.wait(timeout=600)
            start = time.perf_counter()
            for p in procs:
                p.join(timeout=1800)
            elapsed = time.perf_counter() - start
            result.samples.append(4 * n / elapsed)
            ok = all(p.exitcode == 0 for p in procs)
            if ok and storage is not None:
                trials = optuna.load_study(study_name="bench", storage=storage).trials
                ok = sorted(t.number for t in trials) == list(range(4 * n)) and all(
                    t.state == TrialState.COMPLETE for t in trials
                )
            if not ok:
                result.note = "CHECK FAILED: a worker died, or trials are missing or repeated"
    _note_bounds(rows)
    return list(rows.values())


# Cold open: a fresh process opens the journal and calls get_all_trials once.

_OPEN = {
    "optuna-file": (
        "from optuna.storages import JournalStorage\n"
        "from optuna.storages.journal import JournalFileBackend\n"
        "open_ = lambda: JournalStorage(JournalFileBackend({where!r}))"
    ),
    "optuna-redis": (
        "import warnings; warnings.simplefilter('ignore')\n"
        "from optuna.storages import JournalStorage\n"
        "from optuna.storages.journal import JournalRedisBackend\n"
        "open_ = lambda: JournalStorage(JournalRedisBackend({where!r}, prefix='bench'))"
    ),
    "ours": "import optuna_journal\nopen_ = lambda: optuna_journal.open_storage({where!r})",
}

_TIMED = """
import time
{opener}
start = time.perf_counter()
storage = open_()
storage.get_all_trials(storage.get_study_id_from_name("bench"))
print(time.perf_counter() - start)
"""


def _cold_open(kind: str, where: str) -> float:
    code = _TIMED.format(opener=_OPEN[kind].format(where=where))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=900
    )
    return float(out.stdout.split()[-1])


def _our_payloads(n_trials: int) -> list[bytes]:
    memory = JournalStorage(MemoryBackend(), snapshot_every=0)
    fill(memory, n_trials)
    return list(memory.backend.read())[0].payloads


def _copy(payloads: list[bytes], backend: Backend, snapshot: bool) -> None:
    """Write ``payloads`` to a new journal, with a snapshot where the schedule puts the last.

    A file gets the bytes appending them one by one would leave (a durability mark before
    each record), written at once: a cold open reads what an optimisation leaves."""
    from optuna_journal.replay.snapshot import is_due

    due = max((p for p in range(len(payloads)) if is_due(p, 10_000)), default=0)
    cut = due if snapshot else len(payloads)
    if isinstance(backend, FileBackend):
        _write_as_appended(backend.location, payloads[:cut])
    else:
        JournalStorage(backend, snapshot_every=0)  # writes the header
        for i in range(1, cut, 20_000):
            backend.append(payloads[i : min(i + 20_000, cut)])
    if snapshot:
        JournalStorage(backend, snapshot_every=0).snapshot()
        for i in range(cut, len(payloads), 20_000):
            backend.append(payloads[i : i + 20_000])


def _write_as_appended(path: str, payloads: list[bytes]) -> None:
    """A log file of ``payloads`` (a header first), each appended alone by one process:
    each record follows a mark vouching for everything before that append."""
    out = bytearray(frames.MAGIC + frames.mark(0) + frames.pack(payloads[0]))
    for payload in payloads[1:]:
        out += frames.mark(len(out)) + frames.pack(payload)
    with open(path, "wb") as f:
        f.write(out)


class _OptunaMemoryBackend(BaseJournalBackend, BaseJournalSnapshot):
    """Optuna's journal in memory: JSON logs, and the pickled snapshots Optuna itself takes."""

    def __init__(self) -> None:
        self.logs: list[str] = []
        self.snapshot: bytes | None = None

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        return (json.loads(log) for log in self.logs[log_number_from:])

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self.logs.extend(json.dumps(log) for log in logs)

    def save_snapshot(self, snapshot: bytes) -> None:
        self.snapshot = snapshot

    def load_snapshot(self) -> bytes | None:
        return self.snapshot


def _optuna_logs(n_trials: int, snapshots: bool = True) -> _OptunaMemoryBackend:
    """Optuna's journal of ``n_trials``, with the pickle snapshots Optuna takes if asked."""
    backend = _OptunaMemoryBackend()
    storage = optuna.storages.JournalStorage(backend)
    if not snapshots:  # Optuna takes them only where the backend can keep them
        storage._backend = _NoSnapshots(backend)
    fill(storage, n_trials)
    return backend


class _NoSnapshots(BaseJournalBackend):
    def __init__(self, backend: _OptunaMemoryBackend) -> None:
        self._inner = backend

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        return self._inner.read_logs(log_number_from)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        self._inner.append_logs(logs)


def bench_cold_open(
    sizes: Sizes, workdir: str, redis_url: str | None, n: int | None = None, suffix: str = ""
) -> list[Result]:
    """Seconds a fresh process takes to open a journal of ``n`` trials
    (``sizes.cold_trials``) and read them all: ours with and without a snapshot."""
    n = sizes.cold_trials if n is None else n
    ours = _our_payloads(n)
    theirs = _optuna_logs(n)
    places: dict[str, tuple[str, str]] = {}

    with open(os.path.join(workdir, "optuna.log"), "w") as f:
        f.writelines(log + "\n" for log in theirs.logs)
    places["optuna-file"] = ("optuna-file", f.name)
    for snap in (False, True):
        path = os.path.join(workdir, f"ours{'-snap' if snap else ''}.journal")
        _copy(ours, FileBackend(path), snap)
        places["ours-file" + ("+snapshot" if snap else "")] = ("ours", path)
    if redis_url is not None:
        import redis

        from optuna_journal.backends.redis import RedisBackend

        client = redis.Redis.from_url(redis_url)
        pipe = client.pipeline(transaction=False)
        for i, log in enumerate(theirs.logs):
            pipe.set(f"bench:log:{i}", log)
        pipe.set("bench:log_number", len(theirs.logs) - 1)
        if theirs.snapshot is not None:
            pipe.set("bench:snapshot", theirs.snapshot)
        pipe.execute()
        places["optuna-redis"] = ("optuna-redis", redis_url)
        for snap in (False, True):
            name = f"bench{'-snap' if snap else ''}-{os.getpid()}"
            _copy(ours, RedisBackend(redis_url, name), snap)
            places["ours-redis" + ("+snapshot" if snap else "")] = (
                "ours",
                f"{redis_url}?journal={name}",
            )

    results = {
        name: Result("cold open" + suffix, name, "s", higher_is_better=False) for name in places
    }
    for _ in _progress(range(sizes.repeat), "cold open" + suffix):
        for name, (kind, where) in places.items():
            results[name].samples.append(_cold_open(kind, where))
    for name, (_, where) in places.items():
        if os.path.exists(where):
            results[name].note = f"{os.path.getsize(where) / n:.0f} B/trial"
    return list(results.values())


_RSS = """
{opener}


def status(field):  # KiB
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


# VmHWM, not ru_maxrss: a child started with fork and exec inherits its parent's ru_maxrss.
before = status("VmRSS")
storage = open_()
trials = storage.get_all_trials(storage.get_study_id_from_name("bench"), deepcopy=False)
print((status("VmHWM") - before) / len(trials))
"""


def bench_memory(
    sizes: Sizes, workdir: str, n: int | None = None, suffix: str = ""
) -> list[Result]:
    """Peak RSS of a fresh process that loaded an ``n``-trial journal
    (``sizes.memory_trials``), less what it had before opening it: KiB per trial (Linux)."""
    n = sizes.memory_trials if n is None else n
    ours = os.path.join(workdir, "memory.journal")
    _copy(_our_payloads(n), FileBackend(ours), snapshot=False)
    theirs = os.path.join(workdir, "memory-optuna.log")
    with open(theirs, "w") as f:
        f.writelines(log + "\n" for log in _optuna_logs(n, snapshots=False).logs)
    places = {"optuna-file": ("optuna-file", theirs), "ours-file": ("ours", ours)}
    rows = {k: Result("memory" + suffix, k, "KiB/trial", higher_is_better=False) for k in places}
    for _ in _progress(range(sizes.repeat), "memory" + suffix):
        for name, (kind, where) in places.items():
            code = _RSS.format(opener=_OPEN[kind].format(where=where))
            out = subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True,
                text=True,
                check=True,
                timeout=900,
            )
            rows[name].samples.append(float(out.stdout.split()[-1]))
    return list(rows.values())


def bench_scale(sizes: Sizes, workdir: str, redis_url: str | None) -> list[Result]:
    """One study of ``sizes.scale_trials`` trials in files: cold open (ours with and
    without a snapshot), memory, and the reads that walk the whole study."""
    n = sizes.scale_trials
    suffix = f", {n:,} trials"
    workdir = os.path.join(workdir, "scale")  # the other workloads' files are in workdir
    os.mkdir(workdir)
    reads = ["get_all_trials", "get_best_trial"]
    return [
        *bench_cold_open(sizes, workdir, None, n, suffix),
        *bench_memory(sizes, workdir, n, suffix),
        *bench_reads(sizes, workdir, None, n, ["optuna-file", "ours-file"], reads, suffix),
    ]


def _progress(it: Iterable[T], what: str, unit: str = "round") -> Iterator[T]:
    return iter(tqdm(it, desc=what, unit=unit, leave=False))


@contextlib.contextmanager
def _redis(url: str | None, workdir: str) -> Iterator[str | None]:
    """The Redis server to use: the one given, else a throwaway one if a binary is at hand."""
    if url is not None:
        yield url
        return
    from optuna_journal.redis_server import RedisServer

    server = RedisServer(Path(workdir) / "redis", "everysec")
    try:
        server.start()
    except (FileNotFoundError, RuntimeError) as err:
        print(f"Redis storages skipped: {err}", file=sys.stderr)
        yield None
        return
    try:
        yield server.url
    finally:
        server.stop()


def _bench_dask(sizes: Sizes, workdir: str, redis_url: str | None) -> list[Result]:
    from optuna_journal.bench_dask import bench_dask  # it imports this module

    return bench_dask(sizes, workdir, redis_url)


WORKLOADS: dict[str, Callable[[Sizes, str, str | None], list[Result]]] = {
    "optimize": bench_optimize,  # lifecycle and tpe
    "reads": bench_reads,
    "concurrency": bench_concurrency,
    "cold-open": bench_cold_open,
    "memory": lambda sizes, workdir, redis_url: bench_memory(sizes, workdir),
    "growth": bench_growth,
    "dask": _bench_dask,
    "scale": bench_scale,
}
"""Each workload by the name ``--only`` takes, in the order a full run runs them."""


def reference(result: Result, results: list[Result]) -> Result | None:
    """The result of ``result``'s workload that its ratio is to."""
    name = DASK_REFERENCE if result.workload.startswith("dask") else REFERENCE
    return next((r for r in results if r.workload == result.workload and r.storage == name), None)


def ratio(result: Result, reference: Result | None) -> float | None:
    if reference is None or not reference.samples or not result.samples:
        return None
    if result.higher_is_better:
        return result.median / reference.median
    return reference.median / result.median


def table(results: list[Result]) -> str:
    """A Markdown table of medians, ranges and ratios to the reference."""
    lines = [
        "| workload | storage | median | min-max | vs Optuna | note |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        x = ratio(r, reference(r, results))
        lines.append(
            f"| {r.workload} | {r.storage} | {r.median:.4g} {r.unit} "
            f"| {min(r.samples):.4g}-{max(r.samples):.4g} "
            f"| {'' if x is None else f'{x:.2f}x'} | {r.note} |"
        )
    return "\n".join(lines)


def machine() -> str:
    return (
        f"{platform.node()}: {platform.processor() or platform.machine()}, {os.cpu_count()} "
        f"cores, Python {platform.python_version()}, Optuna {optuna.__version__}"
    )


def run(
    quick: bool, json_path: str | None, redis_url: str | None, only: list[str] | None = None
) -> int:
    """Run the workloads (``only`` these, if given) and print the table; return the exit
    status."""
    sizes = Sizes.quick() if quick else Sizes()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="optuna-journal-bench-") as workdir:
        with _redis(redis_url, workdir) as url:
            started = time.perf_counter()
            for name, workload in WORKLOADS.items():
                if only is None or name in only:
                    results += workload(sizes, workdir, url)
    print(f"\n{machine()}; {time.perf_counter() - started:.0f} s\n")
    print(table(results))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(
                {
                    "machine": machine(),
                    "results": [
                        {
                            **r.__dict__,
                            "median": r.median,
                            "ratio": ratio(r, reference(r, results)),
                        }
                        for r in results
                    ],
                },
                f,
                indent=2,
            )
    return 0
