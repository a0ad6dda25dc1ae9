from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
import pickle
import socket
import time
import uuid

import pytest
import redis

from optuna_journal import open_storage
from optuna_journal.backends import Backend
from optuna_journal.backends.redis import RedisBackend, from_url, split_url
from optuna_journal.errors import (
    CorruptLogError,
    JournalConnectionError,
    LogTruncatedError,
    NotAJournalError,
)
from optuna_journal.redis_server import RedisServer
from tests.backends.contract import BackendContract, _all
from tests.proxy import Proxy


class TestRedisBackend(BackendContract):
    @pytest.fixture
    def backend(self, redis_server: RedisServer) -> Backend:
        return RedisBackend(redis_server.url, name=uuid.uuid4().hex)

    def reopen(self, backend: Backend) -> Backend:
        return pickle.loads(pickle.dumps(backend))


def _name() -> str:
    return uuid.uuid4().hex


def test_redis_reads_in_batches_across_the_batch_size(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url, name=_name())
    backend.append_head(b"h")
    backend.append([str(i).encode() for i in range(25_000)])
    batches = list(backend.read())
    assert [len(b.payloads) for b in batches] == [10_000, 10_000, 5_001]
    assert batches[-1].cursor.records == 25_001
    assert [p for b in batches for p in b.payloads][1:] == [str(i).encode() for i in range(25_000)]
    assert _all(backend, batches[0].cursor)[0][0] == b"9999"


def test_redis_append_survives_a_server_that_forgot_the_script(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url, name=_name())
    backend.append_head(b"h")
    list(backend.read())
    backend.append([b"a"])
    redis.Redis.from_url(redis_server.url).script_flush()  # as a restart would
    backend.append([b"b", b"c"])
    assert _all(backend)[0] == [b"h", b"a", b"b", b"c"]


def test_redis_read_past_lost_entries_is_refused_not_stepped_over(
    redis_server: RedisServer,
) -> None:
    # A failover to a replica that lacked this process's last entries, then another
    # process's append: a read that went on from the later entries would hide the gap,
    # and the next append's check would pass on an entry read after it.
    name = _name()
    reader, other = RedisBackend(redis_server.url, name), RedisBackend(redis_server.url, name)
    reader.append_head(b"h")
    reader.append([b"a", b"b"])
    cursor = list(reader.read())[-1].cursor
    server = redis.Redis.from_url(redis_server.url)
    ((lost, _),) = server.xrevrange(reader.key, count=1)
    server.xdel(reader.key, lost)
    other.append([b"c"])
    with pytest.raises(LogTruncatedError, match=f"holds entry {lost.decode()} .record 2"):
        list(reader.read(cursor))
    with pytest.raises(LogTruncatedError, match="Nothing was appended"):
        reader.append([b"d"], after=cursor)
    assert _all(other)[0] == [b"h", b"a", b"c"]


def test_redis_append_of_several_records_to_a_key_of_another_type_writes_none(
    redis_server: RedisServer,
) -> None:
    backend = RedisBackend(redis_server.url, name=_name())
    redis.Redis.from_url(redis_server.url).set(backend.key, b"not a stream")
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        backend.append([b"a", b"b"])
    assert redis.Redis.from_url(redis_server.url).get(backend.key) == b"not a stream"


def test_redis_keys_are_namespaced_with_a_cluster_hash_tag(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url, name="my-study")
    backend.append_head(b"h")
    assert backend.key == "optuna-journal:{my-study}:log"
    assert redis.Redis.from_url(redis_server.url).type(backend.key) == b"stream"


def test_redis_url_takes_the_journal_name_and_keeps_the_rest() -> None:
    assert split_url("redis://:pw@h:1/2?journal=s&socket_timeout=3&replicas=1") == (
        "redis://:pw@h:1/2?socket_timeout=3",
        {"journal": "s", "replicas": "1"},
    )
    assert split_url("unix:///tmp/r.sock?db=3") == ("unix:///tmp/r.sock?db=3", {})
    with pytest.raises(ValueError, match="replicas= in a Redis URL must be a count, got '-1'"):
        from_url("redis://127.0.0.1:1/0?journal=s&replicas=-1")


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://127.0.0.1:26379",
        "redis+sentinel://127.0.0.1:26379/",
        "redis+sentinel://:pw@127.0.0.1:26379/svc/one",
        "redis+sentinel://127.0.0.1:26379/svc?socket_timeout=3",
    ],
)
def test_redis_sentinel_url_without_a_service_or_with_other_options_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="SERVICE") as raised:
        from_url(url)
    assert "pw" not in str(raised.value)


def test_redis_sentinel_url_shows_neither_password_in_messages() -> None:
    url = "redis+sentinel://:pw1@127.0.0.1:26379/svc?sentinel_password=pw2&socket_timeout=3"
    with pytest.raises(ValueError, match="sentinel_password=") as raised:
        from_url(url)  # socket_timeout is not for a Sentinel URL
    assert "pw1" not in str(raised.value) and "pw2" not in str(raised.value)
    assert str(raised.value).startswith(
        "redis+sentinel://:***@127.0.0.1:26379/svc?sentinel_password=***&socket_timeout=3:"
    )


def test_redis_replicas_an_acknowledged_append_is_on_the_replica(
    replicated: tuple[RedisServer, RedisServer, Proxy],
) -> None:
    primary, replica, _ = replicated
    backend = from_url(f"{primary.url}?journal=r&replicas=1")
    on_replica = redis.Redis.from_url(replica.url)
    backend.append_head(b"head")
    assert on_replica.xlen(backend.key) == 1
    for n in range(2, 40):
        backend.append([b"x" * 1000, b"y"][: n % 2 + 1])
        assert on_replica.xlen(backend.key) == redis.Redis.from_url(primary.url).xlen(backend.key)


def test_redis_replicas_missing_is_a_clear_bounded_error(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url, name=_name(), retry_timeout=0.3, replicas=1)
    with pytest.raises(JournalConnectionError, match="0 of the 1 replicas asked for had them"):
        backend.append_head(b"head")
    assert _all(backend)[0] == [b"head"]  # on the primary, unacknowledged
    with pytest.raises(JournalConnectionError, match="after 0.3 s: they are on the primary"):
        backend.append([b"x"])


def test_redis_unix_socket_and_db_from_the_url(redis_server: RedisServer) -> None:
    open_storage(f"unix://{redis_server.socket}?db=3&journal=sock")  # writes the header
    assert redis.Redis(unix_socket_path=str(redis_server.socket), db=3).exists(
        "optuna-journal:{sock}:log"
    )
    assert not redis.Redis.from_url(redis_server.url).exists("optuna-journal:{sock}:log")


@pytest.fixture(scope="module")
def password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-pw"), "always", "--requirepass", "s3cret")
    server.start()
    yield server
    server.stop()


def test_redis_password_in_the_url(password_server: RedisServer) -> None:
    url = f"redis://:s3cret@127.0.0.1:{password_server.port}/0"
    backend = RedisBackend(url, name="pw")
    backend.append_head(b"h")
    assert _all(backend)[0] == [b"h"]
    assert "s3cret" not in backend.location and "***" in backend.location


def test_redis_wrong_password_fails_at_once_without_retrying(password_server: RedisServer) -> None:
    started = time.monotonic()
    with pytest.raises(JournalConnectionError, match="refused our credentials"):
        RedisBackend(f"redis://:wrong@127.0.0.1:{password_server.port}/0", connect_timeout=30)
    assert time.monotonic() - started < 10  # no retrying for 30 s on an answer that is final


def test_redis_server_down_at_start_is_a_clear_bounded_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    started = time.monotonic()
    with pytest.raises(JournalConnectionError, match=f"redis://127.0.0.1:{port}/0 journal x"):
        RedisBackend(f"redis://127.0.0.1:{port}/0", name="x", connect_timeout=1.0)
    assert time.monotonic() - started < 10


def test_redis_key_of_another_type_is_refused(redis_server: RedisServer) -> None:
    redis.Redis.from_url(redis_server.url).set("optuna-journal:{taken}:log", "mine")
    with pytest.raises(NotAJournalError, match="holds a string"):
        RedisBackend(redis_server.url, name="taken")
    assert redis.Redis.from_url(redis_server.url).get("optuna-journal:{taken}:log") == b"mine"


def test_redis_foreign_stream_entry_is_reported_with_its_record_number(
    redis_server: RedisServer,
) -> None:
    backend = RedisBackend(redis_server.url, name=_name())
    backend.append_head(b"h")
    backend.append([b"a"])
    redis.Redis.from_url(redis_server.url).xadd(backend.key, {"other": "x"})
    with pytest.raises(CorruptLogError, match="record 2"):
        _all(backend)


def test_redis_backend_pickles_as_its_url(redis_server: RedisServer, tmp_path: Path) -> None:
    backend = RedisBackend(redis_server.url, name=_name())
    backend.append_head(b"h" * 1000)
    blob = pickle.dumps(backend)
    assert len(blob) < 400 and b"h" * 100 not in blob
    assert _all(pickle.loads(blob))[0] == [b"h" * 1000]
