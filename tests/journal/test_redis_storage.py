"""JournalStorage on a real redis-server: conformance, processes, restarts, lost replies."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
import pickle
import time
import uuid

import optuna
from optuna.testing.pytest_storages import StorageTestCase
from optuna.trial import TrialState
import pytest
import redis

from optuna_journal import (
    JournalConnectionError,
    JournalStorage,
    LogTruncatedError,
    codec,
    open_storage,
)
from optuna_journal.backends.redis import RedisBackend
from optuna_journal.cli import main
from optuna_journal.redis_server import RedisServer
from tests.conftest import start_replica
from tests.proxy import Proxy
from tests.sentinel import SERVICE, SentinelServer
from tests.workers import optimize, optimize_reopening_through, optimize_through, run_spawned


class TestRedisBackendConformance(StorageTestCase):
    @pytest.fixture
    def storage(self, redis_server: RedisServer) -> JournalStorage:
        return JournalStorage(RedisBackend(redis_server.url, name=uuid.uuid4().hex))


def _location(url: str) -> str:
    return f"{url}?journal={uuid.uuid4().hex}"


def test_redis_four_spawned_processes_run_1000_trials(redis_server: RedisServer) -> None:
    location = _location(redis_server.url)
    optuna.create_study(study_name="mp", storage=open_storage(location))
    run_spawned(optimize, [(location, "mp", 250)] * 4)
    trials = optuna.load_study(study_name="mp", storage=open_storage(location)).trials
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: 1000}
    assert sorted(t.number for t in trials) == list(range(1000))


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def test_redis_server_killed_and_restarted_mid_run_loses_nothing(
    own_server: RedisServer, tmp_path: Path
) -> None:
    def restart() -> None:
        own_server.kill()  # mid-run, no shutdown save: only the AOF survives
        time.sleep(1.0)
        own_server.start()

    optimize_through(_location(own_server.url), "restart", 150, tmp_path / "finished", restart)


def test_redis_server_that_lost_acknowledged_records_stops_a_writer_that_read_them(
    own_server: RedisServer,
) -> None:
    location = _location(own_server.url)
    study = optuna.create_study(study_name="lost", storage=open_storage(location))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=5)
    redis.Redis.from_url(own_server.url).config_set("appendonly", "no")  # its AOF stops here
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=5)  # acknowledged, in memory
    own_server.kill()
    own_server.start()  # back from its AOF: 5 trials
    with pytest.raises(LogTruncatedError, match="no longer holds entry"):
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    trials = optuna.load_study(study_name="lost", storage=open_storage(location)).trials
    assert [(t.number, t.state) for t in trials] == [(n, TrialState.COMPLETE) for n in range(5)]


def _lost(acknowledged: Counter[int], trials: list[optuna.trial.FrozenTrial]) -> list[int]:
    """Acknowledged trials that are gone: missing, or their number given to a new trial
    (acknowledged again, or left unfinished)."""
    twice = [n for n, times in acknowledged.items() if times > 1]
    gone = [n for n in acknowledged if n >= len(trials) or trials[n].state != TrialState.COMPLETE]
    return twice + gone


@pytest.mark.parametrize("replicas", [1, 0])
def test_redis_failover_to_a_replica_loses_no_acknowledged_trial_with_replicas(
    replicated: tuple[RedisServer, RedisServer, Proxy], tmp_path: Path, replicas: int
) -> None:
    # The workers reach the primary through one address that follows a failover, as a
    # managed endpoint does. Mid-run the replication link is cut, the primary is SIGKILLed,
    # the replica promoted, and the old primary brought back as its replica. Without
    # replicas=1 (the control) the primary acknowledged trials only it held: lost.
    primary, replica, link = replicated
    endpoint = Proxy(primary.port)

    def fail_over() -> None:
        link.sever()
        time.sleep(0.5)
        primary.kill()
        redis.Redis.from_url(replica.url).replicaof("NO", "ONE")
        endpoint.target_port = replica.port
        start_replica(primary, replica.port)

    location = f"{_location(endpoint.url)}&replicas={replicas}"
    found = optimize_reopening_through(location, "failover", 100, tmp_path / "acks", fail_over)
    assert bool(_lost(*found)) == (replicas == 0)


def test_redis_sentinel_failover_under_four_processes_loses_no_acknowledged_trial(
    replicated: tuple[RedisServer, RedisServer, Proxy], tmp_path: Path
) -> None:
    # Redis Sentinel finds the primary SIGKILLed, promotes its replica and, once the old
    # primary is back, makes it the new one's replica; the workers follow through the
    # sentinel's answers alone.
    primary, replica, _ = replicated
    sentinel = SentinelServer(tmp_path / "sentinel", primary.port)
    try:
        sentinel.start(replicas=1)

        def fail_over() -> None:
            primary.kill()
            deadline = time.monotonic() + 60
            while sentinel.primary_port() != replica.port:
                assert time.monotonic() < deadline, "the sentinel did not fail over"
                time.sleep(0.1)
            primary.start()  # as it was, a primary: the sentinel turns it into a replica

        location = sentinel.url(uuid.uuid4().hex, replicas=1)
        found = optimize_reopening_through(location, "s", 100, tmp_path / "acks", fail_over)
        assert not _lost(*found)
        assert main(["verify", location]) == 0  # the CLI reaches it through the sentinel
    finally:
        sentinel.kill()


def test_redis_sentinel_with_passwords_of_its_own_carries_a_study_across_a_failover(
    tmp_path: Path,
) -> None:
    # Sentinels and data nodes ask for different passwords: the URL gives the data nodes' in
    # its user part and the sentinels' as sentinel_password=; a new connection after the
    # failover asks the sentinel again, with its password.
    auth = ("--requirepass", "data-pw", "--masterauth", "data-pw")
    primary = RedisServer(tmp_path / "primary", "always", *auth)
    replica = RedisServer(tmp_path / "replica")
    sentinel = SentinelServer(tmp_path / "sentinel", primary.port, "sentinel-pw", "data-pw")
    try:
        primary.start()
        start_replica(replica, primary.port, "data-pw")
        sentinel.start(replicas=1)
        base = f"redis+sentinel://:data-pw@127.0.0.1:{sentinel.port}/{SERVICE}/0"
        location = f"{base}?journal=auth&sentinel_password=sentinel-pw"
        study = optuna.create_study(storage=open_storage(location))
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=5)
        assert redis.Redis(port=primary.port, password="data-pw").wait(1, 10_000) == 1
        primary.kill()
        deadline = time.monotonic() + 60
        while sentinel.primary_port() != replica.port:
            assert time.monotonic() < deadline, "the sentinel did not fail over"
            time.sleep(0.1)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=5)
        assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 10

        for wrong in ("", "?sentinel_password=wrong"):
            started = time.monotonic()
            with pytest.raises(JournalConnectionError, match="sentinel_password=") as raised:
                RedisBackend(base + wrong, connect_timeout=30)
            assert time.monotonic() - started < 10  # a refusal is final: no retrying
            assert "data-pw" not in str(raised.value) and "wrong" not in str(raised.value)
    finally:
        sentinel.kill()
        for server in (replica, primary):
            server.kill()


def test_redis_lost_replies_leave_no_duplicate_trial_param_or_value(
    redis_server: RedisServer,
) -> None:
    proxy = Proxy(redis_server.port, marker=b"EVALSHA", probability=0.15)
    name = uuid.uuid4().hex
    storage = JournalStorage(RedisBackend(proxy.url, name=name))
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(0))

    def objective(trial: optuna.Trial) -> float:
        for step in range(3):
            trial.report(step, step)
        trial.set_user_attr("u", trial.number)
        return trial.suggest_float("x", 0, 1) + trial.suggest_int("n", 0, 3)

    study.optimize(objective, n_trials=40)
    proxy.close()
    assert proxy.dropped > 10, "the proxy lost too few replies to test anything"

    backend = RedisBackend(redis_server.url, name=name)
    payloads = [p for batch in backend.read() for p in batch.payloads][1:]
    ids = [(r.writer, r.rid) for r in codec.decode(payloads, backend.location, 1)]
    assert len(ids) > len(set(ids))  # the repeats are in the log ...
    replica = JournalStorage(backend)
    trials = replica.get_all_trials(study._study_id)  # ... and take effect once
    assert [t.number for t in trials] == list(range(40))
    for t in trials:
        assert t.state == TrialState.COMPLETE and set(t.params) == {"x", "n"}
        assert t.intermediate_values == {0: 0.0, 1: 1.0, 2: 2.0} and t.user_attrs == {
            "u": t.number
        }
    assert trials == study.trials


def _write_from_child(storage: JournalStorage, study_id: int) -> None:
    storage.set_study_user_attr(study_id, "child", "was here")


def test_redis_pickled_storage_reconnects_in_the_child(redis_server: RedisServer) -> None:
    storage = open_storage(_location(redis_server.url))
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "pickled")
    assert len(pickle.dumps(storage)) < 400
    run_spawned(_write_from_child, [(storage, study_id)])
    assert storage.get_study_user_attrs(study_id) == {"child": "was here"}
