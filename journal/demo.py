"""``optuna-journal demo``: a real multi-process optimisation on one journal file."""

from __future__ import annotations

from collections import Counter
import math
import multiprocessing
import os
import shlex
import time

import optuna
from tqdm import tqdm

from optuna_journal.backends.file import FileBackend
from optuna_journal.storage import JournalStorage

_FINISHED = (
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.PRUNED,
    optuna.trial.TrialState.FAIL,
)


def objective(trial: optuna.Trial) -> float:
    """A cheap stand-in for training: a learning curve over 10 epochs, pruned when hopeless."""
    lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
    depth = trial.suggest_int("depth", 1, 8)
    activation = trial.suggest_categorical("activation", ["relu", "tanh", "gelu"])
    floor = (math.log10(lr) + 2) ** 2 + (depth - 5) ** 2 / 10
    floor += {"relu": 0.0, "tanh": 0.2, "gelu": 0.1}[activation]
    loss = floor
    for epoch in range(10):
        loss = floor + 1.0 / (epoch + 1)
        trial.report(loss, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    trial.set_user_attr("epochs", 10)
    return loss


def _worker(path: str, study_name: str, n_trials: int, seed: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=study_name,
        storage=JournalStorage(FileBackend(path)),
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2),
    )
    study.optimize(objective, n_trials=n_trials)


def run(path: str, study_name: str, workers: int, trials: int) -> int:
    """Run the demo and print its report; return the exit status."""
    if workers < 1 or trials < 1:
        raise ValueError(f"--workers and --trials must be at least 1, got {workers} and {trials}")
    path = os.path.abspath(path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(FileBackend(path))
    study = optuna.create_study(study_name=study_name, storage=storage, load_if_exists=True)
    before = len(study.get_trials(deepcopy=False, states=_FINISHED))
    shares = [trials // workers + (i < trials % workers) for i in range(workers)]

    print(f"Optimising {trials} trials with {workers} processes on {path}")
    start = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(path, study_name, share, seed))
        for seed, share in enumerate(shares)
        if share
    ]
    for p in procs:
        p.start()
    with tqdm(total=trials, unit="trial") as bar:
        while True:
            done = len(study.get_trials(deepcopy=False, states=_FINISHED)) - before
            bar.update(done - bar.n)
            if not any(p.is_alive() for p in procs):
                break
            time.sleep(0.1)
    elapsed = time.perf_counter() - start
    failed = [p.exitcode for p in procs if p.exitcode != 0]

    all_trials = study.get_trials(deepcopy=False)
    counts = Counter(t.state.name for t in all_trials)
    best = study.best_trial
    print(f"\nFinished in {elapsed:.1f} s ({trials / elapsed:.0f} trials/s).")
    print(f"Best trial: #{best.number}  value {best.value:.6g}  params {best.params}")
    print("Trials per state: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(f"Journal: {storage.position} records, {os.path.getsize(path):,} bytes at {path}")
    print("\nSee it live in optuna-dashboard, or as one HTML file:")
    print(f"  optuna-journal dashboard {shlex.quote(path)}")
    print(f"  optuna-journal report {shlex.quote(path)} -o report.html")
    if failed:
        print(f"{len(failed)} worker(s) failed with exit codes {failed}")
        return 1
    return 0
