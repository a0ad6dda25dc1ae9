"""Soak mode: with ``OPTUNA_JOURNAL_SOAK=1`` the tests marked slow run their long versions;
and the soak itself: many workers on one journal, one SIGKILLed every few seconds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import json
import multiprocessing
import multiprocessing.process
import os
from pathlib import Path
import random
import signal
import time
from typing import TypeVar

import optuna
from optuna.trial import TrialState
import pytest

from tests.workers import soak_objective, soak_storage, soak_worker

T = TypeVar("T")

SOAK = os.environ.get("OPTUNA_JOURNAL_SOAK") == "1"


def slow(test: T) -> T:
    """Mark a test that has a long soak version, and give that version the time it needs."""
    marked: T = pytest.mark.slow(pytest.mark.timeout(1800)(test) if SOAK else test)
    return marked


@dataclass
class Figures:
    """What one soak run did and measured."""

    workers: int
    target: int
    kills: int = 0
    trials: int = 0
    acknowledged: int = 0
    seconds: float = 0.0
    log_bytes: int = 0

    @property
    def trials_per_second(self) -> float:
        return self.trials / self.seconds

    @property
    def bytes_per_trial(self) -> float:
        return self.log_bytes / self.trials


def run(
    locations: list[str],
    workers: int,
    trials: int,
    kills: int,
    every: float,
    acks: Path,
    log_bytes: Callable[[], int],
    grace: int = 5,
) -> Figures:
    """Soak one journal: ``workers`` spawned processes (on ``locations`` in turn) run
    :func:`tests.workers.soak_worker` until ``workers * trials`` trials are complete or pruned,
    while this process SIGKILLs a random one every ``every`` seconds, ``kills`` times, and
    starts another in its place. Then it fails the last killed trials by their heartbeat,
    runs their retries, and checks the log (see :func:`check`). The heartbeat's grace period
    is ``grace`` seconds."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ctx = multiprocessing.get_context("spawn")
    target = workers * trials
    figures = Figures(workers, target)
    study = optuna.create_study(study_name="soak", storage=soak_storage(locations[0], grace))
    rng = random.Random(0)
    orphans: set[int] = set()

    def start(slot: int) -> multiprocessing.process.BaseProcess:
        location = locations[slot % len(locations)]
        process = ctx.Process(
            target=soak_worker, args=(location, "soak", target, str(acks), grace)
        )
        process.start()
        return process

    began = time.monotonic()
    procs = [start(slot) for slot in range(workers)]
    while figures.kills < kills:
        time.sleep(every)
        alive = [slot for slot, p in enumerate(procs) if p.is_alive()]
        if not alive:
            break
        slot, trial = _stopped_mid_trial(study, [(i, procs[i]) for i in alive], rng)
        victim = procs[slot]
        os.kill(victim.pid, signal.SIGKILL)  # type: ignore[arg-type]
        victim.join()
        figures.kills += 1
        orphans.add(trial)
        procs[slot] = start(slot)
    for p in procs:
        p.join(timeout=1200)
    assert [p.exitcode for p in procs] == [0] * len(procs), "a soak worker raised or hung"
    figures.seconds = time.monotonic() - began

    time.sleep(grace + 0.5)  # past the grace period of the last killed worker's trial
    optuna.storages.fail_stale_trials(study)
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    study.optimize(soak_objective, n_trials=len(waiting))
    figures.trials = len(study.trials)
    figures.acknowledged = check(study, orphans, acks)
    figures.log_bytes = log_bytes()
    return figures


WORKERS, TRIALS, KILLS, EVERY = (8, 500, 10, 3.0) if SOAK else (4, 100, 2, 1.0)
"""Every soak's size: workers, trials each, kills, and seconds between kills."""


def report_figures(tmp_path: Path, name: str, figures: Figures) -> None:
    line = (
        f"soak {name}: {figures.workers} workers, {figures.trials} trials "
        f"({figures.acknowledged} acknowledged), {figures.kills} kills "
        "(each mid-trial: the trial failed by its heartbeat and retried), "
        f"{figures.trials_per_second:.1f} trials/s, {figures.bytes_per_trial:.0f} log bytes/trial"
    )
    assert figures.kills == KILLS, f"the workers finished before {KILLS} kills: {line}"
    print(line)
    (tmp_path / "soak.json").write_text(json.dumps({**vars(figures), "line": line}))


def _stopped_mid_trial(
    study: optuna.Study,
    alive: list[tuple[int, multiprocessing.process.BaseProcess]],
    rng: random.Random,
) -> tuple[int, int]:
    """Stop (SIGSTOP) a random worker at a moment the log shows it running a trial, so that
    the kill that follows leaves a trial for the heartbeat to fail; return its slot and the
    trial's number. A trial names its process in its ``pid`` attr (set first thing), so the
    worker stays stopped only for one local read, well within the heartbeat's grace period."""
    for _ in range(1000):
        slot, process = rng.choice(alive)
        os.kill(process.pid, signal.SIGSTOP)  # type: ignore[arg-type]
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        mine = [t.number for t in running if t.user_attrs.get("pid") == process.pid]
        assert len(mine) <= 1, f"process {process.pid} ran trials {mine} at once"
        if mine:
            return slot, mine[0]
        os.kill(process.pid, signal.SIGCONT)  # type: ignore[arg-type]
        time.sleep(0.05)
    raise AssertionError("no worker was ever found running a trial")


def check(study: optuna.Study, orphans: set[int], acks: Path) -> int:
    """The soak's invariants; return how many trial ends were acknowledged.

    - Trial numbers are 0, 1, 2... with none repeated; no trial is left running or waiting.
    - Every acknowledged end is in the log as acknowledged.
    - The failed trials are exactly those killed mid-trial, and each was retried with its
      params by a trial that names it in ``failed_trial``.
    """
    trials = study.get_trials(deepcopy=False)
    assert [t.number for t in trials] == list(range(len(trials)))
    assert len({t._trial_id for t in trials}) == len(trials)
    states = {t.number: t.state for t in trials}
    assert not [n for n, s in states.items() if s in (TrialState.RUNNING, TrialState.WAITING)]
    told = [line.split() for line in acks.read_text().splitlines()]
    assert len({int(n) for n, _ in told}) == len(told), "a trial acknowledged twice"
    wrong = [(n, s) for n, s in told if states[int(n)].name != s]
    assert not wrong, f"acknowledged ends not in the log as acknowledged: {wrong[:10]}"
    failed = {n for n, s in states.items() if s is TrialState.FAIL}
    assert failed == orphans, (sorted(failed), sorted(orphans))
    retries = {
        t.system_attrs["failed_trial"]: t for t in trials if "failed_trial" in t.system_attrs
    }
    for number in failed:
        assert number in retries, f"trial {number} was failed but never retried"
        assert trials[number].params.items() <= retries[number].params.items()
    return len(told)
