"""A journal on a Dask cluster: the log on the scheduler, a replica in every worker process.

``optuna_integration.DaskStorage`` keeps one storage on the scheduler and makes every call
of every worker a round trip to it. Here the scheduler only orders and keeps the records
(see :mod:`optuna_journal.backends.dask`); each process replays them into its own state and
answers reads from it, without asking the scheduler.
"""

from __future__ import annotations

from collections.abc import Callable
import os
from typing import TYPE_CHECKING, Any
import uuid

import optuna
from optuna.trial import FrozenTrial

from optuna_journal.backends import MemoryBackend
from optuna_journal.backends.dask import DaskBackend, current_client, open_log
from optuna_journal.records import AnyRecord
from optuna_journal.replay import Verdict
from optuna_journal.storage import JournalStorage

if TYPE_CHECKING:
    import distributed

__all__ = ["DaskStorage"]


class DaskStorage(JournalStorage):
    """A journal storage for Optuna on a Dask cluster, in place of
    ``optuna_integration.DaskStorage``.

    The log lives on the scheduler, which decides the order of every record (and so every
    conflict, as a file or Redis does); every process that uses the storage keeps a replica
    of the log and its own state replayed from it, so reads never leave the process. An
    append is one round trip, whose reply brings every record the process has not seen yet.

    Args:
        storage: Where the scheduler keeps the log: ``None`` for its memory only (lost with
            the scheduler), a journal file path on the scheduler's machine, or a Redis URL
            (anything :func:`optuna_journal.open_backend` opens). With a file or Redis, a
            new cluster given the same ``storage`` goes on with every study in it.
        name: The log's name on the scheduler; storages of one name share one log. ``None``:
            a new random name.
        client: The Dask client. ``None``: the current one (``distributed.get_client()``),
            looked up on first use.
        register: Open the log on the scheduler (from ``storage``) now. Only a storage
            made for a log that is open already (by name) may pass ``False``.
        heartbeat_interval, grace_period, heartbeat_stale_trial_callback: As for
            :class:`~optuna_journal.JournalStorage`: heartbeats fail the trials of a worker
            that was killed.

    Raises:
        ValueError: No ``client`` was given and there is no current one; or the scheduler
            holds a log of this name in another ``storage``.

    Example:
        .. code::

            import distributed
            import optuna
            from optuna_journal.dask import DaskStorage

            with distributed.Client() as client:
                storage = DaskStorage("study.journal")  # on the scheduler's machine
                study = optuna.create_study(storage=storage)
                futures = [
                    client.submit(study.optimize, objective, n_trials=10, pure=False)
                    for _ in range(4)
                ]
                distributed.wait(futures)
    """

    def __init__(
        self,
        storage: str | os.PathLike[str] | None = None,
        name: str | None = None,
        client: distributed.Client | None = None,
        register: bool = True,
        *,
        heartbeat_interval: int | None = None,
        grace_period: int | None = None,
        heartbeat_stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    ) -> None:
        if storage is not None and not isinstance(storage, (str, os.PathLike)):
            raise TypeError(
                "storage must be None, a journal file path or a Redis URL, got "
                f"{type(storage).__name__}"
            )
        self.name = name or f"optuna-journal-{uuid.uuid4().hex}"
        self._client = client
        self._deferred = not register  # unpickled: opened on first use (see DaskBackend)
        if register:
            open_log(self.name, None if storage is None else os.fspath(storage), self.client)
        self._dask = DaskBackend(self.name, client)
        super().__init__(
            self._dask,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=heartbeat_stale_trial_callback,
        )

    @property
    def client(self) -> distributed.Client:
        """The Dask client this storage talks to the scheduler through."""
        if self._client is None:
            self._client = current_client()
        return self._client

    def _open(self) -> None:
        if not self._deferred:
            super()._open()

    def _sync(self, mine: AnyRecord | None = None) -> Verdict:
        if self._deferred:
            self._deferred = False
            super()._open()
        return super()._sync(mine)

    def get_base_storage(self) -> JournalStorage:
        """A copy of the log, in this process's memory: a storage that outlives the cluster
        (its studies and trials keep their ids)."""
        return JournalStorage(MemoryBackend(self._dask.payloads()))

    def __reduce__(self) -> tuple[Any, ...]:
        # By name: the receiving process attaches to the log the scheduler holds.
        return (
            _reopen,
            (
                self.name,
                self._heartbeat_interval,
                self._grace_period,
                self._heartbeat_stale_trial_callback,
            ),
        )


def _reopen(
    name: str,
    heartbeat_interval: int | None,
    grace_period: int | None,
    heartbeat_stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None,
) -> DaskStorage:
    return DaskStorage(
        name=name,
        register=False,
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        heartbeat_stale_trial_callback=heartbeat_stale_trial_callback,
    )
