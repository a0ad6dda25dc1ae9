"""``optuna_journal.dask.DaskStorage`` on a real ``distributed.LocalCluster`` with worker
processes: the log on the scheduler, a replica in every process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
import os
from pathlib import Path
import pickle
import signal
import subprocess
import sys
import threading
import time

import distributed
import optuna
from optuna.testing.pytest_storages import StorageTestCase
from optuna.trial import TrialState
import pytest

from optuna_journal import JournalError, JournalStorage, log, open_storage
from optuna_journal.backends import Backend, Cursor, FileBackend
from optuna_journal.backends.dask import DaskBackend, _Log, open_log
from optuna_journal.dask import DaskStorage
from optuna_journal.records import JournalHeader
from optuna_journal.verify import verify
from tests import workers
from tests.backends.contract import BackendContract


def _cluster(n_workers: int = 2) -> distributed.LocalCluster:
    return distributed.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=2,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # its HTTP server on loopback, any free port
    )


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    with _cluster() as cluster, distributed.Client(cluster) as client:
        yield client


class TestDaskStorageConformance(StorageTestCase):
    @pytest.fixture
    def storage(self, client: distributed.Client) -> DaskStorage:
        return DaskStorage(client=client)


class TestDaskStorageOnAFileConformance(StorageTestCase):
    @pytest.fixture
    def storage(self, client: distributed.Client, tmp_path: Path) -> DaskStorage:
        return DaskStorage(str(tmp_path / "study.journal"), client=client)


class TestDaskBackend(BackendContract):
    @pytest.fixture
    def backend(self, client: distributed.Client) -> Backend:
        name = f"contract-{time.monotonic_ns()}"
        open_log(name, None, client)
        return DaskBackend(name, client)

    def reopen(self, backend: Backend) -> Backend:
        assert isinstance(backend, DaskBackend)
        return DaskBackend(backend.name, backend._client)


def _optimize_four(client: distributed.Client, study: optuna.Study, n_trials: int) -> None:
    futures = [
        client.submit(study.optimize, workers.quadratic, n_trials=n_trials, pure=False)
        for _ in range(4)
    ]
    for future in distributed.as_completed(futures):
        future.result()


def test_dask_four_optimizations_on_two_worker_processes(client: distributed.Client) -> None:
    study = optuna.create_study(storage=DaskStorage(client=client))
    _optimize_four(client, study, 100)
    trials = study.trials
    assert sorted(t.number for t in trials) == list(range(400))
    assert all(t.state is TrialState.COMPLETE for t in trials)


def test_dask_enqueued_trials_each_run_once(client: distributed.Client) -> None:
    study = optuna.create_study(storage=DaskStorage(client=client))
    for i in range(50):
        study.enqueue_trial({"x": float(i)})
    _optimize_four(client, study, 25)
    trials = study.trials
    assert len(trials) == 100
    assert all(t.state is TrialState.COMPLETE for t in trials)
    enqueued = [t.params["x"] for t in trials if "fixed_params" in t.system_attrs]
    assert sorted(enqueued) == [float(i) for i in range(50)]


def test_dask_storage_reads_on_a_worker_from_its_replica(client: distributed.Client) -> None:
    storage = DaskStorage(client=client)
    study = optuna.create_study(storage=storage, study_name="local-reads")
    study.optimize(workers.quadratic, n_trials=20)

    def reads(study: optuna.Study) -> tuple[int, float, int]:
        from optuna_journal.backends import dask

        study.trials  # noqa: B018  (the first use fetches the log into the replica)
        calls = 0
        call = dask._call

        def counting(*args: object, **kwargs: object) -> object:
            nonlocal calls
            calls += 1
            return call(*args, **kwargs)  # type: ignore[arg-type]

        dask._call = counting  # type: ignore[assignment]
        try:
            for _ in range(10):
                best, n = study.best_value, len(study.trials)
        finally:
            dask._call = call
        return calls, best, n

    calls, best, n = client.submit(reads, study, pure=False).result()
    assert (calls, best, n) == (0, study.best_value, 20)


def _one_trial(study: optuna.Study) -> None:
    study.optimize(workers.quadratic, n_trials=1)


def _count(study: optuna.Study) -> int:
    return len(study.trials)


def test_dask_reads_see_what_was_written_before_a_task_or_a_result(
    client: distributed.Client,
) -> None:
    """Reads are local, yet never behind the Dask work they follow: a task sees the trials
    of tasks that finished before it was submitted, and the client those of a result."""
    study = optuna.create_study(storage=DaskStorage(client=client))
    writer, reader = sorted(client.scheduler_info()["workers"])
    assert client.submit(_count, study, workers=reader, pure=False).result() == 0
    for n in range(1, 31):  # each round: a write on one worker, then a read on the other
        client.submit(_one_trial, study, workers=writer, pure=False).result()
        assert client.submit(_count, study, workers=reader, pure=False).result() == n
        assert len(study.trials) == n


def test_dask_storages_of_one_name_share_one_log(client: distributed.Client) -> None:
    a = DaskStorage(client=client, name="shared")
    b = DaskStorage(client=client, name="shared")
    other = DaskStorage(client=client, name="not-shared")
    study_id = a.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    assert b.get_study_id_from_name("s") == study_id
    trial_id = b.create_new_trial(study_id)
    assert a.get_trial(trial_id).state is TrialState.RUNNING
    assert other.get_all_studies() == []


def test_dask_storage_of_a_name_held_elsewhere_is_refused(
    client: distributed.Client, tmp_path: Path
) -> None:
    DaskStorage(client=client, name="in-memory")
    with pytest.raises(ValueError, match="already holds a journal named 'in-memory'"):
        DaskStorage(str(tmp_path / "s.journal"), client=client, name="in-memory")


def test_dask_storage_bad_arguments_are_refused(client: distributed.Client) -> None:
    with pytest.raises(TypeError, match="journal file path or a Redis URL"):
        DaskStorage(optuna.storages.InMemoryStorage(), client=client)  # type: ignore[arg-type]
    with pytest.raises(JournalError, match="no journal named .never-opened."):
        DaskStorage(client=client, name="never-opened", register=False).get_all_studies()


def test_dask_storage_without_a_client_says_how_to_make_one() -> None:
    code = (
        "from optuna_journal.dask import DaskStorage\n"
        "try:\n"
        "    DaskStorage()\n"
        "except ValueError as err:\n"
        "    print(err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "No Dask client found" in out.stdout and "distributed.Client(" in out.stdout


def test_dask_storage_pickles_as_its_name(client: distributed.Client) -> None:
    storage = DaskStorage(client=client, name="pickled")
    study = optuna.create_study(storage=storage)
    study.optimize(workers.quadratic, n_trials=30)
    data = pickle.dumps(storage)
    assert b"pickled" in data and len(data) < 500
    copy = pickle.loads(data)
    assert isinstance(copy, DaskStorage) and copy.name == "pickled"
    assert len(copy.get_all_trials(study._study_id)) == 30


def test_dask_base_storage_is_a_copy_in_this_process(client: distributed.Client) -> None:
    storage = DaskStorage(client=client)
    study = optuna.create_study(storage=storage, study_name="copied")
    study.optimize(workers.quadratic, n_trials=5)
    base = storage.get_base_storage()
    assert isinstance(base, JournalStorage) and not isinstance(base, DaskStorage)
    copy = optuna.load_study(study_name="copied", storage=base)
    assert [t.params for t in copy.trials] == [t.params for t in study.trials]
    assert storage.client is client


def test_dask_a_new_cluster_goes_on_with_the_file(tmp_path: Path) -> None:
    path = str(tmp_path / "s.journal")
    with _cluster(1) as cluster, distributed.Client(cluster) as client:
        study = optuna.create_study(storage=DaskStorage(path, client=client), study_name="s")
        _optimize_four(client, study, 10)
    with _cluster(1) as cluster, distributed.Client(cluster) as client:
        study = optuna.load_study(study_name="s", storage=DaskStorage(path, client=client))
        assert len(study.trials) == 40
        _optimize_four(client, study, 5)
    trials = open_storage(path).get_all_trials(0)
    assert sorted(t.number for t in trials) == list(range(60))
    assert all(t.state is TrialState.COMPLETE for t in trials)


def _optimize_acknowledging(study: optuna.Study, n_trials: int, acks: str) -> None:
    def objective(trial: optuna.Trial) -> float:
        time.sleep(0.02)
        return workers.quadratic(trial)

    def acknowledged(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        with open(acks, "a") as f:
            f.write(f"{trial.number}\n")

    study.optimize(objective, n_trials=n_trials, callbacks=[acknowledged])


def test_dask_worker_killed_mid_study_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    path, acks = str(tmp_path / "s.journal"), str(tmp_path / "acks")
    with _cluster() as cluster, distributed.Client(cluster) as client:
        study = optuna.create_study(storage=DaskStorage(path, client=client), study_name="s")
        futures = [
            client.submit(_optimize_acknowledging, study, 40, acks, pure=False) for _ in range(4)
        ]
        while not os.path.exists(acks) or len(Path(acks).read_text().split()) < 20:
            time.sleep(0.05)
        pid = next(iter(client.run(os.getpid).values()))
        os.kill(pid, signal.SIGKILL)
        for future in distributed.as_completed(futures):
            future.result()  # the killed worker's tasks ran again elsewhere
        trials = study.trials
    assert verify(path).sound
    storage = open_storage(path)
    on_file = storage.get_all_trials(storage.get_study_id_from_name("s"))
    assert [t.number for t in on_file] == [t.number for t in trials]
    assert sorted(t.number for t in on_file) == list(range(len(on_file)))
    acknowledged = {int(n) for n in Path(acks).read_text().split()}
    complete = {t.number for t in on_file if t.state is TrialState.COMPLETE}
    assert acknowledged <= complete and len(complete) >= 160
    assert len(on_file) - len(complete) <= 2  # what the killed worker's two threads ran
    records = [r for _, r in log.records(storage.backend) if not isinstance(r, JournalHeader)]
    ids = [(r.writer, r.rid) for r in records]
    assert len(ids) == len(set(ids))


def test_dask_scheduler_group_commits_appends_that_wait_for_a_write(tmp_path: Path) -> None:
    """Appends arriving while a write is in flight go together in the next write, in order;
    a failed write fails each append of its group, and the next one is written."""
    store = FileBackend(str(tmp_path / "s.journal"))
    writes: list[list[bytes]] = []
    in_flight, release, failing = threading.Event(), threading.Event(), threading.Event()
    append = store.append

    def held(payloads: Sequence[bytes], sync: bool = True, after: Cursor | None = None) -> None:
        writes.append(list(payloads))
        if len(writes) == 1:
            in_flight.set()
            release.wait()
        if failing.is_set():
            raise OSError(28, "No space left on device")
        append(payloads, sync=sync, after=after)

    store.append = held  # type: ignore[method-assign]

    async def main() -> tuple[list[BaseException | None], list[bytes]]:
        log = _Log(store)
        first = asyncio.ensure_future(log.commit([b"0"], head=False, sync=True))
        await asyncio.to_thread(in_flight.wait)
        rest = [asyncio.ensure_future(log.commit([b"%d" % i], False, True)) for i in range(1, 5)]
        await asyncio.sleep(0)  # each of them queues behind the write in flight
        assert len(log._queue) == 4
        release.set()
        await asyncio.gather(first, *rest)
        failing.set()
        lost = [log.commit([b"lost"], head=False, sync=True) for _ in range(2)]
        outcomes = await asyncio.gather(*lost, return_exceptions=True)
        failing.clear()
        await log.commit([b"5"], head=False, sync=True)
        return outcomes, log.payloads

    outcomes, payloads = asyncio.run(main())
    assert writes == [[b"0"], [b"1", b"2", b"3", b"4"], [b"lost", b"lost"], [b"5"]]
    assert all(isinstance(o, OSError) and o.errno == 28 for o in outcomes)
    assert payloads == [b"0", b"1", b"2", b"3", b"4", b"5"]
    assert [p for batch in FileBackend(store.location).read() for p in batch.payloads] == payloads
