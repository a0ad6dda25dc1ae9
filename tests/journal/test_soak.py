"""The soak: workers with attrs, intermediate values and pruning on one journal, one of them
SIGKILLed and replaced every few seconds; on a local file and on Redis. CI runs 4 x 100 trials
with two kills; with ``OPTUNA_JOURNAL_SOAK=1``, 8 x 500 with ten kills, one every 3 s."""

from __future__ import annotations

from pathlib import Path

import redis

from optuna_journal.redis_server import RedisServer
from optuna_journal.verify import verify
from tests import soak
from tests.soak import EVERY, KILLS, TRIALS, WORKERS, report_figures, slow


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
