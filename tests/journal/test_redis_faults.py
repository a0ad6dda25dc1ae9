"""Faults of a running Redis journal (issue 23): a server paused past the timeout, and the
stream's key deleted or replaced under running storages. A real redis-server on loopback."""

from __future__ import annotations

from collections.abc import Callable
import multiprocessing
from pathlib import Path
import re
import time
from typing import cast
import uuid

import optuna
from optuna.study import StudyDirection
import pytest
import redis

from optuna_journal import (
    JournalConnectionError,
    JournalError,
    JournalStorage,
    LogTruncatedError,
    NotAJournalError,
    open_storage,
)
from optuna_journal.backends.redis import RedisBackend, WrongTypeError
from optuna_journal.redis_server import RedisServer
from optuna_journal.verify import verify

MINIMIZE = [StudyDirection.MINIMIZE]


def _objective(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", 0, 1)


def _journal(
    server: RedisServer, retry_timeout: float = 60.0
) -> tuple[JournalStorage, RedisBackend, str]:
    """A storage on a journal of its own, its backend, and its location."""
    name = uuid.uuid4().hex
    backend = RedisBackend(server.url, name, retry_timeout=retry_timeout)
    return JournalStorage(backend), backend, f"{server.url}?journal={name}"


def _server_ms(admin: redis.Redis) -> int:
    seconds, microseconds = admin.time()
    return seconds * 1000 + microseconds // 1000


def _entries(admin: redis.Redis, key: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    return cast("list[tuple[bytes, dict[bytes, bytes]]]", admin.xrange(key))


@pytest.mark.parametrize("mode", ["ALL", "WRITE"])
def test_redis_paused_past_retry_timeout_is_a_clear_error_then_the_storage_recovers(
    redis_server: RedisServer, mode: str
) -> None:
    storage, backend, location = _journal(redis_server, retry_timeout=1.0)
    study_id = storage.create_new_study(MINIMIZE, "paused")
    trial_id = storage.create_new_trial(study_id)
    admin = redis.Redis.from_url(redis_server.url)
    before = admin.xlen(backend.key)
    # Redis 6.2 holds even CLIENT UNPAUSE through a pause of ALL: that pause must end by
    # itself, well after the write's 1 s (the UNPAUSE below returns once it has).
    admin.client_pause(4000 if mode == "ALL" else 60_000, all=mode == "ALL")
    try:
        if mode == "WRITE":
            assert storage.get_trial(trial_id).user_attrs == {}  # reads go on
        with pytest.raises(JournalConnectionError) as raised:
            storage.set_trial_user_attr(trial_id, "lost", 1)
        if mode == "WRITE":  # CLIENT LIST is not held: see the server drop the connection
            deadline = time.monotonic() + 10
            while any("b" in client["flags"] for client in admin.client_list()):
                assert time.monotonic() < deadline
    finally:
        admin.client_unpause()
    message = str(raised.value)
    assert message.startswith(f"{backend.location}: no answer from the Redis server after 1.0 s")
    assert "Timeout reading" in message
    # The server dropped the held command with its connection, before resuming: it never ran.
    # (Had it resumed first, it would have run it, once: see the backend's docstring.)
    assert admin.xlen(backend.key) == before
    assert storage.get_trial(trial_id).user_attrs == {}

    storage.set_trial_user_attr(trial_id, "kept", 2)  # the same storage goes on
    assert storage.get_trial(trial_id).user_attrs == {"kept": 2}
    assert admin.xlen(backend.key) == before + 1
    fresh = open_storage(location)
    assert fresh.get_all_trials(study_id) == storage.get_all_trials(study_id)
    assert verify(location).sound


@pytest.mark.parametrize("mode", ["ALL", "WRITE"])
def test_redis_paused_within_retry_timeout_the_write_waits_and_lands_once(
    redis_server: RedisServer, mode: str
) -> None:
    storage, backend, location = _journal(redis_server, retry_timeout=10.0)
    study_id = storage.create_new_study(MINIMIZE, "paused")
    trial_id = storage.create_new_trial(study_id)
    admin = redis.Redis.from_url(redis_server.url)
    before = admin.xlen(backend.key)
    admin.client_pause(300, all=mode == "ALL")
    storage.set_trial_user_attr(trial_id, "late", 1)  # answered once the pause ends
    assert admin.xlen(backend.key) == before + 1
    assert open_storage(location).get_trial(trial_id).user_attrs == {"late": 1}
    assert verify(location).sound


def optimize_until_stopped(location: str, study_name: str, progress: str, stopped: str) -> None:
    """Optimize in a spawned process until the storage raises; write each finished trial's
    number to ``progress``, then the storage's error's type and message to ``stopped``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=open_storage(location))

    def finished(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        with open(progress, "a") as f:
            f.write(f"{trial.number}\n")

    try:
        study.optimize(_objective, n_trials=1_000_000, callbacks=[finished])
    except Exception as err:
        # Optuna 5.1 hides a storage error raised while it fails a trial behind an
        # UnboundLocalError of its own: the storage's is the context.
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, JournalError):
            cause = cause.__context__
        raised = err if cause is None else cause
        Path(stopped).write_text(f"{type(raised).__name__}\n{raised}")


def test_redis_stream_deleted_mid_run_stops_every_storage_that_read_it_and_writes_nothing(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    storage, backend, location = _journal(redis_server)
    study = optuna.create_study(study_name="deleted", storage=storage)
    study.optimize(_objective, n_trials=3)
    progress, stopped = tmp_path / "progress", tmp_path / "stopped"
    progress.touch()
    child = multiprocessing.get_context("spawn").Process(
        target=optimize_until_stopped, args=(location, "deleted", str(progress), str(stopped))
    )
    admin = redis.Redis.from_url(redis_server.url)
    child.start()
    try:
        deadline = time.monotonic() + 60
        while len(progress.read_text().split()) < 5:  # the other process is under way
            assert child.is_alive() and time.monotonic() < deadline
            time.sleep(0.01)
        assert admin.delete(backend.key) == 1
        child.join(timeout=60)
    finally:
        child.kill()
    assert child.exitcode == 0
    kind, message = stopped.read_text().split("\n", 1)
    assert kind == "LogTruncatedError"
    assert message.startswith(f"{backend.location}: the stream {backend.key} no longer holds")

    with pytest.raises(LogTruncatedError, match="Nothing was read"):
        storage.get_all_studies()
    # Starting the study over on the empty key would be a silent restart.
    with pytest.raises(LogTruncatedError, match="Nothing was appended"):
        storage.create_new_study(MINIMIZE, "deleted")
    with pytest.raises(LogTruncatedError):
        study.optimize(_objective, n_trials=1)
    assert not admin.exists(backend.key)
    assert open_storage(location).get_all_studies() == []  # opened anew: the key is empty


def test_redis_stream_replaced_by_a_string_is_a_clear_error_and_nothing_is_written(
    redis_server: RedisServer,
) -> None:
    storage, backend, location = _journal(redis_server)
    study_id = storage.create_new_study(MINIMIZE, "string")
    trial_id = storage.create_new_trial(study_id)
    admin = redis.Redis.from_url(redis_server.url)
    admin.set(backend.key, b"x")
    expected = re.escape(f"{backend.location}: the key {backend.key} is no longer a stream (")
    expected += ".*WRONGTYPE.*nothing was written"
    operations: list[Callable[[], object]] = [
        lambda: storage.set_trial_user_attr(trial_id, "a", 1),  # an append
        lambda: storage.get_trial(trial_id),  # a read
        lambda: storage.create_new_study(MINIMIZE, "again"),
    ]
    for operation in operations:
        with pytest.raises(NotAJournalError, match=expected) as raised:
            operation()
        assert type(raised.value) is WrongTypeError and isinstance(raised.value, JournalError)
    assert admin.get(backend.key) == b"x"
    with pytest.raises(NotAJournalError, match="holds a string"):
        open_storage(location)
    assert admin.get(backend.key) == b"x"


@pytest.mark.parametrize("how", ["rename", "copy"])
def test_redis_stream_replaced_by_another_journals_is_refused_not_forked(
    redis_server: RedisServer, how: str
) -> None:
    storage, backend, _ = _journal(redis_server)
    study = optuna.create_study(study_name="mine", storage=storage)
    study.optimize(_objective, n_trials=3)
    admin = redis.Redis.from_url(redis_server.url)
    last = _entries(admin, backend.key)[-1][0]
    # The other journal's entries get ids of a later millisecond on the server's clock: none
    # can be the entry this storage read last, which would pass for it.
    while _server_ms(admin) <= int(last.split(b"-")[0]):
        pass
    other_storage, other, _ = _journal(redis_server)
    optuna.create_study(study_name="other", storage=other_storage).optimize(_objective, 3)
    if how == "rename":
        admin.rename(other.key, backend.key)
    else:  # deleted, then written anew with the other journal's entries, ids and all
        admin.delete(backend.key)
        for entry_id, fields in _entries(admin, other.key):
            admin.xadd(backend.key, {b"r": fields[b"r"]}, id=entry_id)
    replaced = _entries(admin, backend.key)
    assert last not in [entry_id for entry_id, _ in replaced]

    with pytest.raises(LogTruncatedError, match=f"no longer holds entry {last.decode()}"):
        study.optimize(_objective, n_trials=1)
    with pytest.raises(LogTruncatedError, match="Nothing was read"):
        storage.get_all_studies()
    with pytest.raises(LogTruncatedError, match="Nothing was appended"):
        storage.create_new_study(MINIMIZE, "mine")
    assert _entries(admin, backend.key) == replaced  # nothing of this storage's in the other's
