"""Optuna's gRPC storage proxy serving a journal: ``run_grpc_proxy_server(storage)`` as users
run it, reached by ``GrpcStorageProxy`` clients in other processes.

Optuna's documentation says its own JournalStorage is not supported behind the proxy
(optuna/optuna#6084: it tied a trial's claim to the thread that made it, and the proxy
serves each call on whichever thread of its pool is free). Ours decides claims by log order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import subprocess
import sys

import optuna
from optuna.distributions import FloatDistribution
from optuna.storages import GrpcStorageProxy
from optuna.storages._grpc.server import make_server  # what run_grpc_proxy_server runs
from optuna.study import StudyDirection
from optuna.testing.pytest_storages import StorageTestCase
from optuna.trial import TrialState, create_trial
import pytest

from optuna_journal import FileBackend, JournalStorage
from optuna_journal.redis_server import _free_port
from optuna_journal.verify import verify
from tests import workers

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[GrpcStorageProxy, JournalStorage]]:
    """A journal served in this process by Optuna's proxy server, with a pool of only two
    threads (calls from many clients share them), and a client of it."""
    storage = JournalStorage(FileBackend(tmp_path / "s.journal"))
    port = _free_port()
    server = make_server(storage, "127.0.0.1", port, ThreadPoolExecutor(2))
    server.start()
    proxy = GrpcStorageProxy(host="127.0.0.1", port=port)
    proxy.wait_server_ready(timeout=30)
    yield proxy, storage
    proxy.close()
    server.stop(None)


class TestGrpcProxyConformance(StorageTestCase):
    """Optuna's conformance kit, through the proxy to a journal."""

    @pytest.fixture
    def storage(self, served: tuple[GrpcStorageProxy, JournalStorage]) -> GrpcStorageProxy:
        return served[0]

    @pytest.mark.parametrize("param_names", [["a", "b"], ["b", "a"]])
    def test_get_all_trials_params_order(
        self, served: tuple[GrpcStorageProxy, JournalStorage], param_names: list[str]
    ) -> None:
        """The proxy sends a trial's params as a protobuf map, which keeps no order (with
        Optuna's InMemoryStorage behind it as well): the journal keeps it, the proxy's
        clients get the params in some order."""
        proxy, journal = served
        study_id = proxy.create_new_study(directions=[StudyDirection.MINIMIZE])
        trial_id = proxy.create_new_trial(study_id, create_trial(state=TrialState.RUNNING))
        for name in param_names:
            proxy.set_trial_param(trial_id, name, 1.0, FloatDistribution(0.0, 2.0))
        assert list(journal.get_all_trials(study_id)[0].params) == param_names
        assert proxy.get_all_trials(study_id)[0].params == dict.fromkeys(param_names, 1.0)


def test_grpc_proxy_gives_each_enqueued_trial_to_one_of_many_askers(
    served: tuple[GrpcStorageProxy, JournalStorage],
) -> None:
    # Optuna's regression test for #6084 and #6172: 100 threads ask through a pool of two.
    proxy, storage = served
    study = optuna.create_study(storage=proxy, study_name="queued")
    for i in range(30):
        study.enqueue_trial({"i": i})
    with ThreadPoolExecutor(100) as pool:
        asked = list(pool.map(lambda _: study.ask(), range(30)))
    assert len({t._trial_id for t in asked}) == 30
    assert sorted(t.suggest_int("i", 0, 29) for t in asked) == list(range(30))
    journal = storage.get_all_trials(storage.get_study_id_from_name("queued"))
    assert Counter(t.state for t in journal) == {TrialState.RUNNING: 30}


def test_grpc_proxy_server_process_serves_four_optimizing_processes(tmp_path: Path) -> None:
    path = tmp_path / "s.journal"
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-W",
            "ignore",
            "-c",
            "import optuna, optuna_journal; optuna.storages.run_grpc_proxy_server("
            f"optuna_journal.open_storage({str(path)!r}), host='127.0.0.1', port={port})",
        ]
    )
    try:
        proxy = GrpcStorageProxy(host="127.0.0.1", port=port)
        proxy.wait_server_ready(timeout=60)
        optuna.create_study(storage=proxy, study_name="proxied")
        workers.run_spawned(workers.optimize_through_proxy, [(port, "proxied", 50)] * 4)
        proxy.close()
    finally:
        server.kill()
        server.wait(timeout=30)
    storage = JournalStorage(FileBackend(path))  # the log itself, not what the proxy cached
    trials = storage.get_all_trials(storage.get_study_id_from_name("proxied"))
    assert Counter(t.state for t in trials) == {TrialState.COMPLETE: 200}
    assert sorted(t.number for t in trials) == list(range(200))
    assert verify(str(path)).sound
