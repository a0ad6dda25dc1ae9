"""JournalStorage on a real Redis Cluster (three primaries on loopback): conformance, a journal
reached through a node that does not hold it, and a resharding under running processes."""

from __future__ import annotations

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

from optuna_journal import JournalStorage, open_storage
from optuna_journal.backends import Backend
from optuna_journal.backends.redis import RedisBackend
from tests.backends.contract import BackendContract
from tests.cluster import RedisClusterNodes
from tests.workers import optimize_through


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    nodes = RedisClusterNodes(tmp_path_factory.mktemp("cluster"))
    nodes.start()
    yield nodes
    nodes.stop()


def _elsewhere(cluster: RedisClusterNodes) -> tuple[str, str, int]:
    """A new journal's name, the URL of a node that does not hold its slot, and the index
    of the node that does."""
    name = uuid.uuid4().hex
    owner = cluster.owner(name)  # the journal's keys hash by their tag, {name}
    return name, cluster.servers[(owner + 1) % 3].url, owner


class TestRedisClusterBackend(BackendContract):
    @pytest.fixture
    def backend(self, cluster: RedisClusterNodes) -> Backend:
        name, url, _ = _elsewhere(cluster)
        return RedisBackend(url, name=name)

    def reopen(self, backend: Backend) -> Backend:
        return pickle.loads(pickle.dumps(backend))


class TestRedisClusterConformance(StorageTestCase):
    @pytest.fixture
    def storage(self, cluster: RedisClusterNodes) -> JournalStorage:
        name, url, _ = _elsewhere(cluster)
        return JournalStorage(RedisBackend(url, name=name))


def test_redis_cluster_journal_lives_on_the_node_that_holds_its_slot(
    cluster: RedisClusterNodes,
) -> None:
    name, url, owner = _elsewhere(cluster)
    storage = open_storage(f"{url}?journal={name}")
    optuna.create_study(storage=storage, study_name="s").optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=5
    )
    key = RedisBackend(url, name=name).key
    for i, client in enumerate(cluster.clients()):
        if i == owner:
            assert client.type(key) == b"stream"
        else:
            with pytest.raises(redis.exceptions.MovedError):
                client.type(key)
    for i, server in enumerate(cluster.servers):  # reached through any node, the same study
        trials = optuna.load_study(
            study_name="s", storage=open_storage(f"{server.url}?journal={name}")
        ).trials
        assert [t.number for t in trials] == list(range(5)), f"through node {i}"


def test_redis_cluster_slot_moved_under_four_processes_loses_nothing(
    cluster: RedisClusterNodes, tmp_path: Path
) -> None:
    name, url, owner = _elsewhere(cluster)
    to = (owner + 2) % 3
    location = f"{url}?journal={name}"
    optimize_through(
        location, "moving", 100, tmp_path / "finished", lambda: cluster.move_slot(name, to)
    )
    assert cluster.owner(name) == to


def test_redis_cluster_found_by_its_first_moved_reply_where_info_is_denied(
    cluster: RedisClusterNodes,
) -> None:
    # A user without INFO cannot ask whether the node is in a cluster: the journal starts on
    # the node in its URL, which holds its slot, until a resharding moves it away.
    for client in cluster.clients():
        client.execute_command("ACL SETUSER", "noinfo", "on", ">pw", "~*", "&*", "+@all", "-info")
    name = uuid.uuid4().hex
    owner = cluster.owner(name)
    url = f"redis://noinfo:pw@127.0.0.1:{cluster.servers[owner].port}/0?journal={name}"
    study = optuna.create_study(storage=open_storage(url), study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=5)
    cluster.move_slot(name, (owner + 1) % 3)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=5)
    assert [t.number for t in study.trials] == list(range(10))
    reopened = optuna.load_study(study_name="s", storage=open_storage(url)).trials
    assert [t.state for t in reopened] == [TrialState.COMPLETE] * 10


def test_redis_cluster_node_killed_and_restarted_mid_run_loses_nothing(
    cluster: RedisClusterNodes, tmp_path: Path
) -> None:
    name, url, owner = _elsewhere(cluster)
    node = cluster.servers[owner]

    def restart() -> None:
        node.kill()  # no shutdown save: its AOF and cluster config survive
        time.sleep(1.0)
        node.start()  # back within the node timeout: the slot stays with it

    optimize_through(f"{url}?journal={name}", "restart", 100, tmp_path / "finished", restart)
