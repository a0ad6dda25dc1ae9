"""A log on a Dask scheduler, with a replica in every process that uses it.

The scheduler holds each named log: its payloads in order, in memory, and (if asked) in a
store on the scheduler's machine, any other backend: a file, a Redis stream. The store is
the truth; the scheduler appends there first and mirrors what the store then holds, so a new
cluster opening the same store goes on where the last one stopped.

Each process keeps one replica of a log, shared by every :class:`DaskBackend` of that name
in it. An append is one RPC, whose reply carries every payload the replica has not seen
yet, its own included, so an append is always decided on the whole log. Other processes'
appends are pushed to the replica by the scheduler as they land, on the stream that also
brings the process its work: a worker's (its tasks) or a client's (its results). Dask
batches that stream (every 2-5 ms) and keeps its order, so a task, or a result, never
arrives before the records written before it: reads never leave the process, yet a task
submitted after another finished, or ``study.trials`` read after ``wait(futures)``, sees
every trial those wrote. A replica that learns of records it misses (a push that overtook
the RPC reply it follows, another epoch) fetches them with its next read.

Messages are Dask's msgpack: names, numbers and lists of payloads (bytes). Nothing is
pickled but the reference to :func:`install`, run once on the scheduler by
``Client.run_on_scheduler``. Errors come back as data (the exception's class and message),
not as pickled exceptions, and are raised again here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from functools import partial
import logging
import threading
import time
from typing import TYPE_CHECKING, Any
import uuid
import weakref

from optuna_journal.backends.base import Backend, Batch, Cursor
from optuna_journal.errors import (
    CorruptLogError,
    JournalConnectionError,
    JournalError,
    LogReplacedError,
    LogTruncatedError,
    NotAJournalError,
)

if TYPE_CHECKING:
    import distributed

_logger = logging.getLogger("optuna.journal.backends.dask")

_EXTENSION = "optuna_journal"
_OP = "optuna_journal_"
_TOPIC = "optuna_journal"
"""The event topic that brings a client the records of its logs."""
_RETRY = 60.0
"""Seconds an RPC keeps retrying through a lost connection to the scheduler."""
_ERRORS: dict[str, type[Exception]] = {
    cls.__name__: cls
    for cls in (
        CorruptLogError,
        JournalError,
        LogTruncatedError,
        NotAJournalError,
        OSError,
        PermissionError,
        FileNotFoundError,
        ValueError,
    )
}
"""The exceptions a scheduler's reply may name; any other arrives as :class:`JournalError`."""


# The scheduler's side.


def install(dask_scheduler: distributed.Scheduler) -> None:
    """Add the journal handlers to this scheduler, unless it has them already."""
    if _EXTENSION not in dask_scheduler.extensions:
        dask_scheduler.extensions[_EXTENSION] = _Logs(dask_scheduler)


class _Log:
    """One log on the scheduler. Appends to a store are group-committed: those that arrive
    while a write is in flight wait for it, then go together in the next one, one ``fsync``
    for all, in arrival order. Writes run one at a time, in a thread; :meth:`since` runs on
    the event loop, beside them."""

    def __init__(self, store: Backend | None) -> None:
        self.store = store
        self._queue: list[tuple[list[bytes], bool, bool, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._load()
        self._published = (self.epoch, len(self.payloads))

    def _load(self) -> None:
        """(Re)read the whole store, as a new epoch: replicas of the old one start over."""
        self.epoch = uuid.uuid4().hex
        self.payloads: list[bytes] = []
        self.cursor: Cursor | None = None
        self.snapshot = None if self.store is None else self.store.load_snapshot()
        self._catch_up()

    def _catch_up(self) -> None:
        if self.store is None:
            return
        for batch in self.store.read(self.cursor):
            self.payloads.extend(batch.payloads)  # atomic: the loop sees a batch whole or not
            self.cursor = batch.cursor

    def write(self, payloads: list[bytes], head: bool, sync: bool) -> None:
        if self.store is None:
            if not head:
                self.payloads.extend(payloads)
            elif not self.payloads:
                self.payloads.append(payloads[0])
            return
        try:
            if head:
                self.store.append_head(payloads[0])
            else:
                self.store.append(payloads, sync=sync, after=self.cursor)
        except LogReplacedError:  # compacted by another tool: take up the new file
            _logger.info(f"{self.store.location} was replaced (compacted); reading it anew.")
            self._load()
            self.write(payloads, head, sync)
            return
        self._catch_up()

    async def commit(self, payloads: list[bytes], head: bool, sync: bool) -> None:
        """Append ``payloads`` (as the log's head record if ``head``), after every append
        that came before."""
        if self.store is None:  # no I/O: a thread would only add latency
            self.write(payloads, head, sync)
            return
        done = asyncio.get_running_loop().create_future()
        self._queue.append((payloads, head, sync, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain())
        await done

    async def _drain(self) -> None:
        try:
            while self._queue:
                # A head record goes alone (it is written only if the log is empty).
                size = 1 if self._queue[0][1] else self._run_of_appends()
                group, self._queue = self._queue[:size], self._queue[size:]
                payloads = [payload for item in group for payload in item[0]]
                head, sync = group[0][1], any(item[2] for item in group)
                try:
                    await asyncio.to_thread(self.write, payloads, head, sync)
                    failure: Exception | None = None
                except Exception as err:
                    failure = err
                for *_, done in group:
                    if done.done():  # its caller went away (a closed connection)
                        continue
                    if failure is None:
                        done.set_result(None)
                    else:
                        done.set_exception(failure)
        finally:
            self._writer = None

    def _run_of_appends(self) -> int:
        size = 0
        while size < len(self._queue) and not self._queue[size][1]:
            size += 1
        return size

    def unpublished(self) -> dict[str, Any] | None:
        """The records appended since the last call, as a push to replicas (``None``: none);
        after a new epoch, only its name and length, so that replicas read it whole."""
        epoch, start = self._published
        end = len(self.payloads)
        if epoch != self.epoch:
            self._published = (self.epoch, end)
            return {"epoch": self.epoch, "start": end, "payloads": []}
        if end == start:
            return None
        self._published = (epoch, end)
        return {"epoch": epoch, "start": start, "payloads": self.payloads[start:end]}

    def since(self, epoch: str | None, after: int) -> dict[str, Any]:
        """What a replica at ``after`` in ``epoch`` has not seen: the whole log (with its
        snapshot) if it stands in another epoch."""
        payloads = self.payloads
        if epoch != self.epoch:
            return {"epoch": self.epoch, "start": 0, "payloads": payloads, "snap": self.snapshot}
        return {"epoch": epoch, "start": after, "payloads": payloads[after:]}


class _Logs:
    """The scheduler extension: every log by name, the streams its replicas listen on, and
    the handlers they call."""

    def __init__(self, scheduler: distributed.Scheduler) -> None:
        self._scheduler = scheduler
        self._logs: dict[str, tuple[str | None, _Log]] = {}
        self._listeners: dict[str, set[tuple[str, str]]] = {}
        """Per log, the ``("client", id)`` and ``("worker", address)`` streams to push to.
        Kept through a disconnection (a client or worker that comes back keeps its id), so
        never pruned: a few bytes per process that ever used the log."""
        self._opening = asyncio.Lock()
        scheduler.handlers.update(
            {
                _OP + "open": self.open,
                _OP + "append": self.append,
                _OP + "read": self.read,
                _OP + "save_snapshot": self.save_snapshot,
            }
        )

    async def open(self, name: str, store: str | None) -> dict[str, Any]:
        async with self._opening:
            if name in self._logs:
                known = self._logs[name][0]
                if known != store:
                    return _error(
                        ValueError(
                            f"the Dask scheduler already holds a journal named {name!r}, "
                            f"stored in {known or 'its memory only'}, not in {store}: give "
                            "this one another name"
                        )
                    )
                return {}
            try:
                log = await asyncio.to_thread(_open_log, store)
            except Exception as err:
                return _error(err)
            self._logs[name] = (store, log)
            self._listeners[name] = set()
            return {}

    def _log(self, name: str) -> _Log:
        try:
            return self._logs[name][1]
        except KeyError:
            raise JournalError(
                f"the Dask scheduler holds no journal named {name!r}: create it with "
                "optuna_journal.dask.DaskStorage(name=...) from a client of this scheduler (a "
                "restarted scheduler holds none until then)"
            ) from None

    async def append(
        self,
        name: str,
        epoch: str | None,
        after: int,
        payloads: list[bytes],
        head: bool,
        sync: bool,
        listener: list[str],
    ) -> dict[str, Any]:
        try:
            log = self._log(name)
            self._listeners[name].add((listener[0], listener[1]))
            if epoch is not None and epoch != log.epoch:  # the replica must read the new log
                return {"appended": False, **log.since(epoch, after)}
            await log.commit(payloads, head, sync)
        except Exception as err:
            return _error(err)
        self._push(name, log)
        return {"appended": True, **log.since(epoch, after)}

    async def read(
        self, name: str, epoch: str | None, after: int, listener: list[str]
    ) -> dict[str, Any]:
        """What a replica at ``after`` has not seen; from now on, it is pushed to
        ``listener`` too."""
        try:
            log = self._log(name)
        except JournalError as err:
            return _error(err)
        self._listeners[name].add((listener[0], listener[1]))
        return log.since(epoch, after)

    def _push(self, name: str, log: _Log) -> None:
        """Send every listener of ``name`` the records it has not been sent yet. Each
        append's caller does so after its write, so every record goes once, in order."""
        news = log.unpublished()
        if news is None:
            return
        news["name"] = name
        event = {"op": "event", "topic": _TOPIC, "event": (time.time(), news)}
        push = {"op": _OP + "push", **news}
        clients: dict[str, list[dict[str, Any]]] = {}
        workers: dict[str, list[dict[str, Any]]] = {}
        for kind, ident in self._listeners[name]:
            if kind == "worker":
                workers[ident] = [push]
            else:
                clients[ident] = [event]
        self._scheduler.send_all(clients, workers)

    async def save_snapshot(self, name: str, epoch: str, data: bytes) -> dict[str, Any]:
        try:
            log = self._log(name)
        except JournalError as err:
            return _error(err)
        if epoch == log.epoch:
            log.snapshot = data
        return {}


def _open_log(store: str | None) -> _Log:
    from optuna_journal.backends import open_backend

    return _Log(None if store is None else open_backend(store))


def _error(err: Exception) -> dict[str, Any]:
    name = type(err).__name__
    return {"error": name if name in _ERRORS else "JournalError", "message": str(err)}


# A process's side.


class DaskBackend:
    """The log ``name`` on the scheduler of ``client`` (``None``: the current client),
    through this process's replica of it.

    Both are looked up on first use, not before: Dask unpickles a task's arguments on its
    event loop, where nothing may wait for the scheduler. Pickles as its name.
    """

    def __init__(self, name: str, client: distributed.Client | None = None) -> None:
        self._name = name
        self._client = client
        self._replica: _Replica | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def location(self) -> str:
        return f"dask journal {self._name!r}"

    def _get(self) -> _Replica:
        if self._replica is None:
            self._replica = _attach(self._name, self._client or current_client())
        return self._replica

    def append(
        self, payloads: Sequence[bytes], sync: bool = True, after: Cursor | None = None
    ) -> None:
        self._get().append(payloads, sync, after)

    def append_head(self, payload: bytes) -> None:
        self._get().append_head(payload)

    def read(self, after: Cursor | None = None) -> Iterator[Batch]:
        return self._get().read(after)

    def head(self) -> bytes | None:
        return self._get().head()

    def locate(self, cursor: Cursor) -> Cursor | None:
        return self._get().locate(cursor)

    def save_snapshot(self, data: bytes) -> None:
        self._get().save_snapshot(data)

    def load_snapshot(self) -> bytes | None:
        return self._get().load_snapshot()

    def payloads(self) -> list[bytes]:
        """Every record of the log this process has, in order."""
        return self._get().payloads()

    def __reduce__(self) -> tuple[Any, ...]:
        return (DaskBackend, (self._name,))


class _Replica:
    """This process's replica of the log ``name`` on the scheduler of ``client``, shared
    by every :class:`DaskBackend` of that name in it (see :func:`_attach`).

    Pushes from the scheduler land in :meth:`pushed`, on the event loop. Before it answers
    a read, the replica makes sure the scheduler pushes to the stream of the reading
    thread (a worker's task, or the client) and that it holds every record pushed so far.
    """

    def __init__(self, name: str, client: distributed.Client) -> None:
        self._name = name
        self._client = client
        self._lock = threading.Lock()
        self._epoch: str | None = None
        self._payloads: list[bytes] = []
        self._snapshot: bytes | None = None
        self._announced: tuple[str | None, int] = (None, 0)
        """The epoch and length of the log as the last push told."""
        self._listening: set[tuple[str, str]] = set()
        self._fresh()

    @property
    def location(self) -> str:
        return f"dask journal {self._name!r} on {_where(self._client)}"

    def append(
        self, payloads: Sequence[bytes], sync: bool = True, after: Cursor | None = None
    ) -> None:
        epoch = None if after is None else after.log
        self._send(list(payloads), head=False, sync=sync, epoch=epoch)

    def append_head(self, payload: bytes) -> None:
        self._send([payload], head=True, sync=True, epoch=None)

    def _send(self, payloads: list[bytes], head: bool, sync: bool, epoch: Any) -> None:
        listener = self._listener()
        if listener not in self._listening:
            self._listen(listener)
        with self._lock:
            known, after = self._epoch, len(self._payloads)
        reply = self._call(
            "append",
            epoch=known if epoch is None else epoch,
            after=after if epoch in (None, known) else 0,
            payloads=payloads,
            head=head,
            sync=sync,
            listener=list(listener),
        )
        self._merge(reply)
        self._listening.add(listener)
        if not reply["appended"]:
            raise LogReplacedError(f"{self.location} was replaced since this process read it")

    def read(self, after: Cursor | None = None) -> Iterator[Batch]:
        self._fresh()
        with self._lock:
            if after is not None and after.log != self._epoch:
                raise LogReplacedError(f"{self.location} was replaced since this process read it")
            start = 0 if after is None else after.records
            if start > len(self._payloads):
                raise LogTruncatedError(
                    f"{self.location} holds {len(self._payloads)} records, fewer than the "
                    f"{start} this process has read"
                )
            payloads, epoch = self._payloads[start:], self._epoch
        if payloads:
            end = start + len(payloads)
            yield Batch(Cursor(end, end, epoch), payloads)

    def head(self) -> bytes | None:
        self._fresh()
        with self._lock:
            return self._payloads[0] if self._payloads else None

    def locate(self, cursor: Cursor) -> Cursor | None:
        # By record number alone: the scheduler's log numbers its records as its store does,
        # so a snapshot the store holds (whose token is the store's) stands here too.
        self._fresh()
        with self._lock:
            if cursor.records > len(self._payloads):
                return None
            return Cursor(cursor.records, cursor.records, self._epoch)

    def save_snapshot(self, data: bytes) -> None:
        """Keep ``data`` here and on the scheduler (in its memory: the store's own snapshot
        is the store's to write, in its own positions), for processes that start later."""
        with self._lock:
            self._snapshot, epoch = data, self._epoch
        self._call("save_snapshot", epoch=epoch, data=data)

    def load_snapshot(self) -> bytes | None:
        self._fresh()
        with self._lock:
            return self._snapshot

    def payloads(self) -> list[bytes]:
        """Every payload of the replica, in order."""
        self._fresh()
        with self._lock:
            return list(self._payloads)

    def _listener(self) -> tuple[str, str]:
        """The stream that brings this thread's work: its worker's, in a task (its next task
        comes after the records written before it), else its client's (which brings results).
        """
        from distributed import get_worker

        try:
            worker = get_worker()
        except ValueError:
            pass
        else:
            scheduler = self._client.scheduler
            if scheduler is not None and worker.scheduler.address == scheduler.address:
                return ("worker", worker.address)
        return ("client", self._client.id)

    def _listen(self, listener: tuple[str, str]) -> None:
        """Have pushes that reach ``listener`` in this process come here."""
        if listener[0] == "worker":
            from distributed import get_worker

            _route_on_worker(get_worker())
        else:
            _route_on_client(self._client)
        _listeners[listener[1], self._name] = self

    def _fresh(self) -> None:
        """Listen on this thread's stream, and hold every record pushed so far."""
        listener = self._listener()
        with self._lock:
            epoch, after = self._epoch, len(self._payloads)
            announced, length = self._announced
            if listener in self._listening and announced in (None, epoch) and length <= after:
                return
        self._listen(listener)
        self._merge(self._call("read", epoch=epoch, after=after, listener=list(listener)))
        with self._lock:
            if self._announced[0] != self._epoch:  # a push from an epoch left behind
                self._announced = (self._epoch, 0)
        self._listening.add(listener)

    def pushed(self, epoch: str, start: int, payloads: list[bytes]) -> None:
        """Take in a push: its records, if they follow on; else note what to fetch."""
        with self._lock:
            known = self._announced[1] if self._announced[0] == epoch else 0
            self._announced = (epoch, max(known, start + len(payloads)))
        self._merge({"epoch": epoch, "start": start, "payloads": payloads}, pushed=True)

    def _merge(self, reply: dict[str, Any], pushed: bool = False) -> None:
        with self._lock:
            start, payloads = reply["start"], reply["payloads"]
            if start > len(self._payloads):  # a push ahead of what is here: read fetches
                return
            if reply["epoch"] != self._epoch:
                if pushed or start != 0:  # a push of a new epoch; a late reply of an old one
                    return
                self._epoch, self._payloads = reply["epoch"], list(payloads)
                self._snapshot = reply["snap"]
                return
            new = start + len(payloads) - len(self._payloads)
            if new > 0:
                self._payloads += payloads[len(payloads) - new :]

    def _call(self, op: str, **args: Any) -> dict[str, Any]:
        return _call(self._client, self._name, op, **args)


_replicas: weakref.WeakValueDictionary[tuple[int, str], _Replica] = weakref.WeakValueDictionary()
_replicas_lock = threading.Lock()


def open_log(name: str, store: str | None, client: distributed.Client) -> None:
    """Have the scheduler of ``client`` hold the log ``name``, kept in ``store`` (an
    :func:`~optuna_journal.backends.open_backend` location on its machine; ``None``: in its
    memory only), unless it holds it already.

    Raises:
        ValueError: It holds a log of this name kept elsewhere.
    """
    client.run_on_scheduler(install)
    _call(client, name, "open", store=store)


def _call(client: distributed.Client, name: str, op: str, **args: Any) -> dict[str, Any]:
    """One RPC to the scheduler about the log ``name``, retried through lost connections for
    up to ``_RETRY`` seconds (a resent append may land twice; replay applies a record once)."""
    deadline = time.monotonic() + _RETRY
    handler = getattr(client.scheduler, _OP + op)
    pause = 0.05
    while True:
        try:
            reply: dict[str, Any] = client.sync(handler, name=name, **args)
            break
        except OSError as err:  # distributed's CommClosedError is one
            where = _where(client)
            if time.monotonic() + pause > deadline:
                raise JournalConnectionError(
                    f"{where} cannot be reached ({err}); gave up after {_RETRY:.0f} s"
                ) from err
            _logger.warning(f"Lost {where} ({err}); retrying.")
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
    if "error" in reply:
        raise _ERRORS.get(reply["error"], JournalError)(reply["message"])
    return reply


def _where(client: distributed.Client) -> str:
    scheduler = client.scheduler
    return "the Dask scheduler" + ("" if scheduler is None else f" at {scheduler.address}")


def _attach(name: str, client: distributed.Client) -> _Replica:
    """This process's replica of the scheduler's log ``name`` (made on first use)."""
    key = (id(client), name)
    with _replicas_lock:
        replica = _replicas.get(key)
        if replica is None or replica._client is not client:
            replica = _Replica(name, client)
            _replicas[key] = replica
        return replica


_listeners: weakref.WeakValueDictionary[tuple[str, str], _Replica] = weakref.WeakValueDictionary()
"""The replica that each ``(client id or worker address, log name)`` push goes to."""
_routing: weakref.WeakSet[Any] = weakref.WeakSet()
"""The clients and workers of this process that hand pushes to :func:`_route`."""
_routing_lock = threading.Lock()


def _route_on_client(client: distributed.Client) -> None:
    with _routing_lock:
        if client in _routing:
            return
        _routing.add(client)
    ident = client.id
    client.subscribe_topic(_TOPIC, lambda event: _route(ident, **event[1]))


def _route_on_worker(worker: distributed.Worker) -> None:
    with _routing_lock:
        if worker in _routing:
            return
        _routing.add(worker)
    worker.stream_handlers[_OP + "push"] = partial(_route, worker.address)


def _route(ident: str, name: str, epoch: str, start: int, payloads: list[bytes]) -> None:
    """Hand a push to its replica, if it is still here. Runs on the event loop, as a stream
    handler of a worker, which must not raise."""
    replica = _listeners.get((ident, name))
    if replica is None:
        return
    try:
        replica.pushed(epoch, start, payloads)
    except Exception:  # a bug: log it, and let the next append's reply bring the records
        _logger.exception(f"A push to {replica.location} failed.")


def current_client() -> distributed.Client:
    """The client of this task or process, as ``distributed.get_client()`` finds it.

    Raises:
        ValueError: There is none.
    """
    from distributed import get_client

    try:
        return get_client()
    except ValueError:
        raise ValueError(
            "No Dask client found for the journal: pass client=distributed.Client(...), or "
            "make one first (distributed.Client() starts a local cluster)"
        ) from None
