"""The soak: workers with attrs, intermediate values and pruning on one journal, one of them
SIGKILLed and replaced every few seconds; on a local file and on Redis. CI runs 4 x 100 trials
with two kills; with ``OPTUNA_JOURNAL_SOAK=1``, 8 x 500 with ten kills, one every 3 s."""

from __future__ import annotations

import json
from pathlib import Path

import redis

from optuna_journal.redis_server import RedisServer
from optuna_journal.verify import verify
from tests import soak
from tests.soak import SOAK, slow

WORKERS, TRIALS, KILLS, EVERY = (8, 500, 10, 3.0) if SOAK else (4, 100, 2, 1.0)


def report_figures(tmp_path: Path, name: str, figures: soak.Figures) -> None:
    line = (
        f"soak {name}: {figures.workers} workers, {figures.trials} trials "
        f"({figures.acknowledged} acknowledged), {figures.kills} kills "
        "(each mid-trial: the trial failed by its heartbeat and retried), "
        f"{figures.trials_per_second:.1f} trials/s, {figures.bytes_per_trial:.0f} log bytes/trial"
    )
    assert figures.kills == KILLS, f"the workers finished before {KILLS} kills: {line}"
    print(line)
    (tmp_path / "soak.json").write_text(json.dumps({**vars(figures), "line": line}))


@slow
def test_soak_on_a_file(tmp_path: Path) -> None:
    journal = tmp_path / "s.journal"
    figures = soak.run(
        [str(journal)],
        WORKERS,
        TRIALS,
        KILLS,
        EVERY,
        tmp_path / "acks",
        lambda: journal.stat().st_size,
    )
    report = verify(str(journal))
    assert report.sound, report.lines()
    report_figures(tmp_path, "file", figures)


@slow
def test_soak_on_redis(tmp_path: Path, redis_server: RedisServer) -> None:
    location = f"{redis_server.url}?journal=soak"
    client = redis.Redis.from_url(redis_server.url)
    figures = soak.run(
        [location],
        WORKERS,
        TRIALS,
        KILLS,
        EVERY,
        tmp_path / "acks",
        lambda: int(client.memory_usage("optuna-journal:{soak}:log") or 0),
    )
    report = verify(location)
    assert report.sound, report.lines()
    report_figures(tmp_path, "redis", figures)
