"""The ``dask`` workload of ``optuna-journal bench``: ours against ``optuna_integration``'s
``DaskStorage`` on one ``LocalCluster`` (2 worker processes x 2 threads), in one run.

The reference (1.0) is the seed's ``DaskStorage()``: an ``InMemoryStorage`` on the
scheduler. Each round runs every storage in turn on the same cluster:

- 4 concurrent ``client.submit(study.optimize, n_trials=N)`` (RandomSampler): trials/s, the
  trials checked afterwards;
- on a worker, ``study.trials`` and ``study.best_trial`` of a prepared study (each storage's
  study is copied in once, before the rounds; a first call warms the worker's storage up).
"""

from __future__ import annotations

from collections.abc import Callable
import os
import time
from typing import TYPE_CHECKING
import warnings

import optuna
from optuna.storages import BaseStorage, InMemoryStorage
from optuna.trial import TrialState

from optuna_journal.backends.file import FileBackend
from optuna_journal.bench import DASK_REFERENCE as REFERENCE
from optuna_journal.bench import Result, Sizes, _progress, fill, objective
from optuna_journal.storage import JournalStorage

if TYPE_CHECKING:
    import distributed

KINDS = [REFERENCE, "optuna-dask(ours-file)", "ours-dask", "ours-dask-file"]


def _make(kind: str, where: str, client: distributed.Client) -> BaseStorage:
    import optuna_integration

    from optuna_journal.dask import DaskStorage

    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    seeds: Callable[..., BaseStorage] = optuna_integration.DaskStorage
    if kind == REFERENCE:
        return seeds(client=client)
    if kind == "optuna-dask(ours-file)":
        return seeds(JournalStorage(FileBackend(where)), client=client)
    if kind == "ours-dask":
        return DaskStorage(client=client)
    if kind == "ours-dask-file":
        return DaskStorage(where, client=client)
    raise ValueError(f"unknown storage {kind!r}")


def _reads(study: optuna.Study, repeat: int) -> tuple[float, float]:
    """Seconds per ``study.trials`` and per ``study.best_trial``, on the calling worker."""
    study.trials  # noqa: B018  (warm up: the first use in a process opens the storage)
    start = time.perf_counter()
    for _ in range(repeat):
        study.trials  # noqa: B018
    trials = (time.perf_counter() - start) / repeat
    start = time.perf_counter()
    for _ in range(repeat):
        study.best_trial  # noqa: B018
    return trials, (time.perf_counter() - start) / repeat


def _study(storage: BaseStorage, name: str) -> optuna.Study:
    return optuna.load_study(
        study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler()
    )


def bench_dask(sizes: Sizes, workdir: str, redis_url: str | None) -> list[Result]:
    """trials/s of 4 concurrent optimizations, and reads on a worker (see the module)."""
    try:
        import distributed
    except ImportError as err:
        print(f"Dask storages skipped: {err}")
        return []
    n, prepared = sizes.dask_trials, sizes.dask_read_trials
    optimize = {k: Result("dask, 4 x optimize", k, "trials/s", True) for k in KINDS}
    reads: dict[str, dict[str, Result]] = {
        what: {k: Result(f"dask, {what} on a worker", k, "ms", False) for k in KINDS}
        for what in ("study.trials", "study.best_trial")
    }
    template = InMemoryStorage()
    fill(template, prepared, "prepared")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=2,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.run(optuna.logging.set_verbosity, optuna.logging.WARNING)
        client.run(warnings.simplefilter, "ignore", optuna.exceptions.ExperimentalWarning)
        storages = {k: _make(k, os.path.join(workdir, f"dask-{k}"), client) for k in KINDS}
        for storage in _progress(storages.values(), "dask: prepare", "storage"):
            optuna.copy_study(
                from_study_name="prepared", from_storage=template, to_storage=storage
            )
        for round_ in _progress(range(sizes.repeat), "dask"):
            for kind, storage in storages.items():
                name = f"optimize-{round_}"
                study = optuna.create_study(storage=storage, study_name=name)
                optimize[kind].samples.append(_rate(client, study, n))
                if not _sound(_study(storage, name), 4 * n):
                    optimize[kind].note = "CHECK FAILED: trials are missing or repeated"
                trials, best = client.submit(
                    _reads, _study(storage, "prepared"), max(1, sizes.repeat), pure=False
                ).result()
                reads["study.trials"][kind].samples.append(trials * 1e3)
                reads["study.best_trial"][kind].samples.append(best * 1e3)
    return [*optimize.values(), *(r for rows in reads.values() for r in rows.values())]


def _rate(client: distributed.Client, study: optuna.Study, n: int) -> float:
    import distributed

    start = time.perf_counter()
    futures = [client.submit(study.optimize, objective, n_trials=n, pure=False) for _ in range(4)]
    distributed.wait(futures)
    elapsed = time.perf_counter() - start
    for future in futures:
        future.result()
    return 4 * n / elapsed


def _sound(study: optuna.Study, n: int) -> bool:
    trials = study.trials
    return sorted(t.number for t in trials) == list(range(n)) and all(
        t.state is TrialState.COMPLETE for t in trials
    )
