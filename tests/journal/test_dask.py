"""A real Dask ``LocalCluster``: worker processes optimize one study on a journal, through
Optuna's ``DaskStorage`` (the journal on the scheduler) or each opening the journal itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import distributed
import optuna
from optuna.trial import TrialState
import optuna_integration
import pytest

from optuna_journal import FileBackend, JournalStorage
from tests import workers


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",  # its HTTP server on loopback, any free port
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def _check(path: str, n: int) -> None:
    storage = JournalStorage(FileBackend(path))
    trials = storage.get_all_trials(storage.get_study_id_from_name("dask"))
    assert sorted(t.number for t in trials) == list(range(n))
    assert all(t.state is TrialState.COMPLETE for t in trials)


def test_dask_workers_share_a_journal_through_dask_storage(
    client: distributed.Client, tmp_path: Path
) -> None:
    path = str(tmp_path / "s.journal")
    storage = optuna_integration.DaskStorage(JournalStorage(FileBackend(path)), client=client)
    study = optuna.create_study(storage=storage, study_name="dask")
    futures = [
        client.submit(study.optimize, workers.quadratic, n_trials=10, pure=False) for _ in range(4)
    ]
    for future in distributed.as_completed(futures):
        future.result()
    _check(path, 40)
    assert len(study.trials) == 40


def test_dask_workers_each_open_the_pickled_journal(
    client: distributed.Client, tmp_path: Path
) -> None:
    path = str(tmp_path / "s.journal")
    study = optuna.create_study(storage=JournalStorage(FileBackend(path)), study_name="dask")
    futures = [
        client.submit(study.optimize, workers.quadratic, n_trials=10, pure=False) for _ in range(4)
    ]
    for future in distributed.as_completed(futures):
        future.result()
    _check(path, 40)
