"""Journals on the two-client network filesystem of :mod:`tests.netfs`, measured.

    python -m tests.netfs_bench [--profile nfslike] [--trials 200] [--rounds 3]
        [--storages ours,optuna] [--lag ours]

Each round runs, for each storage in turn, 2 processes on mount A and 2 on mount B, each
optimizing ``--trials`` trials of a cheap objective on one new journal, and reports trials/s
(acknowledged trials over the span from the first start to the last end), the workers that
died, and what the log reads back as through the server's directory. ``--lag`` then has one
process on A run 100 trials, 50 ms apart, while a reader on B polls: how long after A's
acknowledgement B sees each trial complete (negative: before A's callback ran).

Storages: ``ours``; ``optuna`` (Optuna's ``JournalFileBackend``, its default symlink lock);
``optuna-open`` (with ``JournalFileOpenLock``); ``ours-cached``, an ablation: ours with the
server's sizes replaced by the client's cached ones (plain ``stat``), to show what the lock's
handoff of the log's end alone does.
"""

from __future__ import annotations

import argparse
from collections import Counter
import json
import multiprocessing
import os
from pathlib import Path
import statistics
import tempfile
import time
from typing import Any

import optuna
from optuna.trial import TrialState

from tests.netfs import NetFS, Testbed


def make(kind: str, path: str) -> optuna.storages.BaseStorage:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if kind.startswith("ours"):
        import optuna_journal

        if kind == "ours-cached":
            from optuna_journal.backends import file, fresh, lock

            def cached(target: int | str) -> fresh.Fresh:
                st = os.stat(target)
                return fresh.Fresh(st.st_size, st.st_mtime_ns, (st.st_dev, st.st_ino))

            for module in (file, lock):
                vars(module)["fresh_stat"] = cached
        return optuna_journal.open_storage(path)
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    lock_obj = JournalFileOpenLock(path) if kind == "optuna-open" else None
    return optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=lock_obj))


def worker(kind: str, path: str, n_trials: int, report: str) -> None:
    start, done, error = time.time(), 0, None
    try:
        study = optuna.load_study(
            study_name="s", storage=make(kind, path), sampler=optuna.samplers.RandomSampler()
        )

        def acknowledged(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            nonlocal done
            done += 1

        study.optimize(
            lambda t: t.suggest_float("x", -10, 10) ** 2,
            n_trials=n_trials,
            callbacks=[acknowledged],
        )
    except Exception as err:  # counted and reported: this is what the run measures
        error = f"{type(err).__name__}: {str(err)[:200]}"
    Path(report).write_text(
        json.dumps({"start": start, "end": time.time(), "done": done, "error": error})
    )


def run(kind: str, fs: NetFS, name: str, n_trials: int, scratch: str) -> dict[str, Any]:
    plain = "ours" if kind == "ours-cached" else kind  # the ablation only in the workers
    optuna.create_study(study_name="s", storage=make(plain, str(fs.a / name)))
    ctx = multiprocessing.get_context("spawn")
    reports = [f"{scratch}/{name}-{i}.json" for i in range(4)]
    mounts = (fs.a, fs.a, fs.b, fs.b)
    procs = [
        ctx.Process(target=worker, args=(kind, str(m / name), n_trials, r))
        for m, r in zip(mounts, reports, strict=True)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(900)
    done = [json.loads(Path(r).read_text()) if os.path.exists(r) else None for r in reports]
    ran = [d for d in done if d is not None]
    died = sum(
        1 for p, d in zip(procs, done, strict=True) if p.exitcode != 0 or d is None or d["error"]
    )
    span = max(d["end"] for d in ran) - min(d["start"] for d in ran)
    try:
        storage = make(plain, str(fs.export / name))
        trials = optuna.load_study(study_name="s", storage=storage).trials
        states = dict(Counter(t.state.name for t in trials))
        unique = len({t.number for t in trials}) == len(trials)
        read_back = f"{states}, numbers unique: {unique}"
    except Exception as err:
        read_back = f"unreadable: {type(err).__name__}: {str(err)[:150]}"
    acknowledged = sum(d["done"] for d in ran)
    return {
        "storage": kind,
        "trials/s": round(acknowledged / span, 1),
        "acknowledged": acknowledged,
        "workers died": died,
        "errors": sorted({d["error"] for d in ran if d["error"]}),
        "read back": read_back,
    }


def publish(path: str, n_trials: int, told: str) -> None:
    study = optuna.load_study(study_name="s", storage=make("ours", path))

    def objective(trial: optuna.Trial) -> float:
        time.sleep(0.05)
        return trial.suggest_float("x", -1, 1)

    def acknowledged(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        with open(told, "a") as f:
            f.write(f"{trial.number} {time.time()}\n")

    study.optimize(objective, n_trials=n_trials, callbacks=[acknowledged])


def lag(kind: str, fs: NetFS, scratch: str, out: str, n_trials: int = 100) -> None:
    name, told = f"lag-{kind}.journal", f"{scratch}/told-{kind}"
    optuna.create_study(study_name="s", storage=make("ours", str(fs.a / name)))
    ctx = multiprocessing.get_context("spawn")
    writer = ctx.Process(target=publish, args=(str(fs.a / name), n_trials, told))
    writer.start()
    reader = optuna.load_study(study_name="s", storage=make(kind, str(fs.b / name)))
    seen: dict[int, float] = {}
    deadline = time.monotonic() + 300
    while len(seen) < n_trials and time.monotonic() < deadline:
        for trial in reader.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            seen.setdefault(trial.number, time.time())
        time.sleep(0.001)
    writer.join(60)
    lines = Path(told).read_text().splitlines()
    lags = sorted(seen[int(n)] - float(t) for n, t in (line.split() for line in lines))
    figures = {
        "median ms": round(1000 * statistics.median(lags), 2),
        "p95 ms": round(1000 * lags[int(0.95 * len(lags))], 2),
        "max ms": round(1000 * lags[-1], 2),
    }
    Path(out).write_text(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="nfslike")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--storages", default="ours,optuna")
    parser.add_argument("--lag", default="ours")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="netfs-bench-")
    bed = Testbed(Path(tempfile.mkdtemp(prefix="netfs-bed-")), args.profile)
    fs = bed.start()
    try:
        for round_ in range(args.rounds):
            kinds = args.storages.split(",")
            for kind in kinds if round_ % 2 == 0 else kinds[::-1]:
                result = run(kind, fs, f"{kind}-{round_}.journal", args.trials, scratch)
                print(f"round {round_}", json.dumps(result), flush=True)
        for kind in filter(None, args.lag.split(",")):
            # Each in a process of its own: the ablation patches the module it imports.
            out = f"{scratch}/lag-{kind}.json"
            reader = multiprocessing.get_context("spawn").Process(
                target=lag, args=(kind, fs, scratch, out)
            )
            reader.start()
            reader.join()
            print(f"lag {kind}", Path(out).read_text(), flush=True)
    finally:
        bed.stop()


if __name__ == "__main__":
    main()
