"""A log in one Redis stream, shared by every process that can reach the server.

Keys: the journal ``NAME`` lives in ``optuna-journal:{NAME}:log``, a stream that is never
trimmed; each entry holds one record in its field ``r``. Its snapshot is the string
``optuna-journal:{NAME}:snapshot``. The braces are a Redis Cluster hash tag: every key of one
journal maps to one slot. Many journals share a server by name.

Order: stream ids give the total order replay uses. The head (record 0) is written with the
explicit id ``0-1``, which Redis accepts only while the stream is empty: written once.

Appends: one Lua script (``EVALSHA``) adds the records and reads back everything after this
process's last read, its own records included: one round trip, one reply. A script runs
atomically and cannot fail after its first ``XADD`` succeeded: a key of another type fails
that one, and a server short of memory refuses a script's writes only at its first. So an
append of several records lands whole or not at all. The script first checks that the stream
still holds the last entry this process read; a server that lost it (restarted without it,
failed over to a replica that never had it, the key deleted) gets nothing, and the append
raises :class:`~optuna_journal.errors.LogTruncatedError`: going on would leave the process's
state ahead of the log. A read checks the same in its ``XRANGE``, which starts at that entry:
without it, a read after such a loss would step over the gap to the entries other processes
add later, and the next append would find its last entry there.

Lost replies and restarts: a connection error or timeout is retried with bounded exponential
backoff for up to ``retry_timeout`` seconds, resending the same payloads. If the first attempt
did reach the server, the log then holds the records twice; each record carries its writer's
own count (``rid``), and replay applies it once. A server that holds a command without
answering (``CLIENT PAUSE``) is waited for as long, no longer (with ``replicas``, 10 s more:
the time a reply to ``WAIT`` is given after its own timeout). Past ``retry_timeout`` the
append raises :class:`~optuna_journal.errors.JournalConnectionError`, and whether its records
are in the log is not known: a paused server drops a command whose connection it saw close,
but runs one it still holds when it resumes. They land whole, if at all, and the next read
brings them in.

Durability is Redis's: with ``appendonly yes`` and ``appendfsync always`` an acknowledged
record survives a crash of the server or its machine; with ``everysec`` up to about a second
of acknowledged records can be lost if the machine (not just the process) fails; without AOF,
only what the last RDB snapshot saved survives a restart.

Replicas: Redis replicates asynchronously, so a failover can lose acknowledged records. With
``replicas=N`` an append is acknowledged only once N replicas have its records: ``WAIT`` follows
the script in one pipeline (one round trip), and the pair is resent whole after a lost
connection. A failover to one of those replicas then loses no acknowledged record. Records
are streamed to replicas in order, so what an append's script reads back before its own
records is on them too; a plain read can still see another process's records before they
reach a replica, and a failover that loses those stops the reader's next append (see above).

Redis Sentinel: with a ``redis+sentinel://`` URL the backend asks the sentinels for the
primary, and asks again when it stops answering or turns out to be a replica; the retries
above carry an append across a failover. Use ``replicas`` so that it loses nothing
acknowledged. Sentinels that ask for a password of their own get the URL's
``sentinel_password=`` (and ``sentinel_username=``).

Redis Cluster: the URL may name any node. One journal is one stream on one slot, so every
command goes to the primary that holds the slot, found through redis-py's ``RedisCluster``.
When the slot moves (a reply ``MOVED``) or its node stops answering, the backend asks the
cluster where the slot is now and retries there, within ``retry_timeout``. A failover to a
replica can lose acknowledged records unless ``replicas`` is set (see Replicas).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
import contextlib
import errno
import hashlib
import logging
import os
import random
import re
import threading
import time
from typing import Any, Protocol, TypeVar, cast
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
import redis.exceptions
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel

from optuna_journal.backends.base import Batch, Cursor
from optuna_journal.errors import (
    CorruptLogError,
    JournalConnectionError,
    LogTruncatedError,
    NotAJournalError,
)

_logger = logging.getLogger("optuna.journal.backends.redis")

T = TypeVar("T")

# Clients are made without decode_responses: every reply is bytes, whatever redis-py's types say.
_FIELD = b"r"
_HEAD_ID = "0-1"
_BATCH = 10_000
# A lost connection, or a cluster that is moving the slot or failing over: try again shortly.
_TRANSIENT = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.MovedError,
    redis.exceptions.AskError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)
_FATAL = (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError)
_SOCKET_TIMEOUT = 30.0
_MAX_WAIT = _SOCKET_TIMEOUT - 10  # seconds a WAIT may block, its reply still in time
# KEYS[1]: the stream. ARGV: the last entry this process has read ('-': none), how many to
# read back after it at most, then the records to add. A stream that lost that entry (a server
# restarted without its writes, a failover, a deleted key) gets nothing: see append.
_LOST = "LOSTREAD"
_APPEND = f"""
if ARGV[1] ~= '-' and #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then
  return redis.error_reply('{_LOST}')
end
for i = 3, #ARGV do
  redis.call('XADD', KEYS[1], '*', '{_FIELD.decode()}', ARGV[i])
end
local start = ARGV[1] == '-' and '-' or '(' .. ARGV[1]
return redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', ARGV[2])
"""
_APPEND_SHA = hashlib.sha1(_APPEND.encode()).hexdigest()


_SENTINEL_SCHEME = "redis+sentinel://"
_OURS = ("journal", "replicas")
"""The query parameters of a Redis URL that are optuna-journal's, not redis-py's."""
_SENTINEL_AUTH = {"sentinel_username": "username", "sentinel_password": "password"}
"""The query parameters of a Sentinel URL that are the sentinels' own credentials."""


class WrongTypeError(NotAJournalError, redis.exceptions.ResponseError):
    """A key of the journal was replaced, while in use, by a value of another type (Redis's
    ``WRONGTYPE``): a journal error, and still the ``ResponseError`` it used to be."""


class _Connection(Protocol):
    """What :meth:`RedisBackend._send` uses of a redis-py connection (whose methods carry no
    types)."""

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def pack_commands(self, commands: Sequence[tuple[Any, ...]]) -> list[bytes]: ...

    def send_packed_command(self, command: list[bytes]) -> None: ...

    def read_response(self) -> Any: ...


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """Take optuna-journal's own query parameters (``journal=NAME``, ``replicas=N``) out of
    a Redis URL; the rest is redis-py's."""
    base, _, query = url.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    rest = urlencode([(key, value) for key, value in pairs if key not in _OURS])
    return (f"{base}?{rest}" if rest else base), {k: v for k, v in pairs if k in _OURS}


def from_url(url: str) -> RedisBackend:
    """The journal a Redis URL names: ``...?journal=NAME&replicas=N`` (defaults: ``default``,
    0), the rest of the URL as redis-py reads it."""
    base, ours = split_url(url)
    replicas = ours.get("replicas", "0")
    if not replicas.isdigit():
        raise ValueError(f"replicas= in a Redis URL must be a count, got {replicas!r}")
    return RedisBackend(base, ours.get("journal", "default"), replicas=int(replicas))


def _redacted(url: str) -> str:
    """``url`` for messages: its passwords (the server's, the sentinels') shown as ``***``."""
    parts = urlsplit(url)
    query = re.sub(r"(?:^|(?<=&))(sentinel_password=)[^&]*", r"\1***", parts.query)
    if parts.password is None and query == parts.query:
        return url
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


class RedisBackend:
    """A journal in a Redis stream.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS or
            ``unix:///path/to/socket?db=N``, as redis-py parses them; in a Redis Cluster,
            any node's. Or, for the primary Redis Sentinel names,
            ``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/SERVICE[/DB]``:
            the sentinels' addresses (port 26379 by default), the service (master) name, the
            database; the credentials are the primary's, the sentinels' own (if they ask for
            any) go in ``?sentinel_password=PW&sentinel_username=USER``.
        name: The journal's name on that server.
        connect_timeout: Seconds to wait for the server on first contact before raising.
        retry_timeout: Seconds an operation keeps retrying through a lost connection, a
            restarting server or one that holds its commands (paused) before raising.
        replicas: Acknowledge an append only once this many replicas have its records (see
            the module's docstring); at most ``retry_timeout`` (capped at 20 s) is waited for
            them.

    Raises:
        JournalConnectionError: The server cannot be reached within ``connect_timeout``.
        NotAJournalError: The journal's key holds something other than a stream.
    """

    def __init__(
        self,
        url: str,
        name: str = "default",
        *,
        connect_timeout: float = 5.0,
        retry_timeout: float = 60.0,
        replicas: int = 0,
    ) -> None:
        if not name:
            raise ValueError("a Redis journal needs a non-empty name")
        if connect_timeout <= 0 or retry_timeout <= 0:
            raise ValueError("connect_timeout and retry_timeout must be positive")
        if replicas < 0:
            raise ValueError(f"replicas must not be negative, got {replicas}")
        self._replicas = replicas
        self._url = url
        self._name = name
        self._location = f"{_redacted(url)} journal {name}"  # asked for on every read
        self._connect_timeout = connect_timeout
        self._retry_timeout = retry_timeout
        self._key = f"optuna-journal:{{{name}}}:log"
        self._snapshot_key = f"optuna-journal:{{{name}}}:snapshot"
        # How long a reply is waited for: a server that holds a command without answering
        # (CLIENT PAUSE, a stuck script) fails an operation within about retry_timeout, as
        # one that is down does. A WAIT for replicas is given its own time on top.
        if replicas:
            socket_timeout = min(retry_timeout, _MAX_WAIT) + _SOCKET_TIMEOUT - _MAX_WAIT
        else:
            socket_timeout = min(retry_timeout, _SOCKET_TIMEOUT)
        self._options: dict[str, Any] = {
            "socket_connect_timeout": min(connect_timeout, 5.0),
            "socket_timeout": socket_timeout,
            "health_check_interval": 0,
        }
        # The server every command goes to: the one in the URL, the primary the sentinels
        # name, or in a cluster the primary that holds the journal's slot (see _find_slot).
        # Retried by us, within our own bounds: not by redis-py.
        self._client = _client(url, retry=Retry(NoBackoff(), 0), **self._options)
        # One connection of the client's, held for every command (see _send), and the
        # process it belongs to (a forked child takes one of its own).
        self._connection: tuple[_Connection, int] | None = None
        self._mutex = threading.Lock()  # one command at a time on it
        self._cluster: RedisCluster | None = None
        # Where the last append's caller had read to, and what the script read after it.
        self._recent: tuple[Cursor, list[Any]] | None = None
        kind = self._call(self._first_contact, connect_timeout)
        if kind not in (b"none", b"stream"):
            raise NotAJournalError(
                f"{self.location}: the key {self._key} holds a {kind.decode()}, not a journal "
                "stream; refusing to touch it"
            )

    def _first_contact(self) -> bytes:
        """The type of the journal's key, asked of the node holding it if this is a cluster."""
        if self._cluster is None and _cluster_enabled(self._client):
            self._find_slot()
        return cast(bytes, self._send(("TYPE", self._key))[0])

    def _find_slot(self) -> None:
        """Point the client at the primary that holds the journal's slot now.

        Raises:
            redis.exceptions.ConnectionError: No node of the cluster answers.
        """
        try:
            if self._cluster is None:
                self._cluster = RedisCluster.from_url(self._url, **self._options)
            else:
                self._cluster.nodes_manager.initialize()
            node = self._cluster.get_node_from_key(self._key)  # type: ignore[no-untyped-call, unused-ignore]
        except redis.exceptions.RedisClusterException as err:  # e.g. the slot has no node yet
            raise redis.exceptions.ConnectionError(f"Redis Cluster: {err}") from err
        self._client = self._cluster.get_redis_connection(node)
        with self._mutex:
            if self._connection is not None:
                self._connection[0].disconnect()
            self._connection = None

    @property
    def location(self) -> str:
        return self._location

    @property
    def key(self) -> str:
        return self._key

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _reopen,
            (self._url, self._name, self._connect_timeout, self._retry_timeout, self._replicas),
        )

    def append(
        self, payloads: Sequence[bytes], sync: bool = True, after: Cursor | None = None
    ) -> None:
        """Durability is the server's (see the module's docstring): ``sync`` changes nothing."""
        # Reads back only after what the caller has read (COUNT 0 reads nothing).
        last, count = ("-", 0) if after is None else (str(after.token), _BATCH)
        args = (1, self._key, last, count, *payloads)

        def run() -> list[Any]:
            try:
                return cast("list[Any]", self._write("EVALSHA", _APPEND_SHA, *args))
            except redis.exceptions.NoScriptError:  # a new or restarted server: send it whole
                return cast("list[Any]", self._write("EVAL", _APPEND, *args))

        try:
            entries = self._call(run, self._retry_timeout)
        except redis.exceptions.ResponseError as err:
            if str(err) != _LOST or after is None:
                raise
            raise self._lost(after, "appended") from None
        # What the script read is what the next read would read, if nothing came in between.
        self._recent = (after, entries) if after is not None and len(entries) < _BATCH else None

    def _write(self, *command: Any) -> Any:
        """Send the write ``command``; if replicas are asked for, follow it with ``WAIT`` in
        the same round trip, and raise unless enough acknowledge it."""
        if not self._replicas:
            return self._send(command)[0]
        wait = min(self._retry_timeout, _MAX_WAIT)
        written, acknowledged = self._send(command, ("WAIT", self._replicas, int(wait * 1000)))
        if acknowledged < self._replicas:
            raise JournalConnectionError(
                f"{self.location}: the records were added, but {acknowledged} of the "
                f"{self._replicas} replicas asked for had them after {wait:g} s: they are on "
                "the primary only, and a failover before they reach a replica would lose them"
            )
        return written

    def _lost(self, after: Cursor, undone: str) -> LogTruncatedError:
        """The error for a stream that no longer holds ``after``'s entry; nothing was
        ``undone`` (appended, read)."""
        return LogTruncatedError(
            f"{self.location}: the stream {self._key} no longer holds entry {after.token} "
            f"(record {after.records - 1}), the last this process has read: the server lost "
            "acknowledged records (restarted without them, or failed over to a replica that "
            f"had not received them), or the key was deleted or replaced. Nothing was {undone}; "
            "open the journal again to go on from what it holds."
        )

    def append_head(self, payload: bytes) -> None:
        def xadd_head() -> None:
            try:
                self._write("XADD", self._key, _HEAD_ID, _FIELD, payload)
            except redis.exceptions.ResponseError as err:
                if "equal or smaller" not in str(err):
                    raise
                # The stream has a record already: the head is written.

        self._call(xadd_head, self._retry_timeout)

    def read(self, after: Cursor | None = None) -> Iterator[Batch]:
        recent, self._recent = self._recent, None
        if recent is not None and after == recent[0]:
            # Up to this process's last append, as the append's own script read it.
            # Entries after it are left to the next read, as if this one had come a moment
            # sooner.
            entries = recent[1]
            if entries:
                yield Batch(
                    Cursor(after.records + len(entries), entries[-1][0].decode()),
                    self._payloads(entries, after.records),
                )
            return
        count = 0 if after is None else after.records
        # The first page starts at the last entry read, which must still be there.
        start, unchecked = ("-", None) if after is None else (str(after.token), after)
        while True:
            page = _BATCH if unchecked is None else _BATCH + 1
            entries = cast(
                "list[list[Any]]",
                self._retrying("XRANGE", self._key, start, "+", "COUNT", page),
            )
            if unchecked is not None:
                if not entries or entries[0][0].decode() != str(unchecked.token):
                    raise self._lost(unchecked, "read")
                del entries[0]
                unchecked = None
            if not entries:
                return
            payloads = self._payloads(entries, count)
            count += len(payloads)
            last = entries[-1][0].decode()
            yield Batch(Cursor(count, last), payloads)
            if len(entries) < _BATCH:
                return
            start = f"({last}"

    def head(self) -> bytes | None:
        entries = cast(
            "list[list[Any]]", self._retrying("XRANGE", self._key, "-", "+", "COUNT", 1)
        )
        return self._payloads(entries, 0)[0] if entries else None

    def locate(self, cursor: Cursor) -> Cursor | None:
        token = str(cursor.token)
        return cursor if self._retrying("XRANGE", self._key, token, token, "COUNT", 1) else None

    def save_snapshot(self, data: bytes) -> None:
        self._retrying("SET", self._snapshot_key, data)

    def load_snapshot(self) -> bytes | None:
        return cast("bytes | None", self._retrying("GET", self._snapshot_key))

    def _payloads(self, entries: list[list[Any]], first: int) -> list[bytes]:
        """The record in each stream entry; ``first`` is the first one's number, for errors."""
        try:
            payloads: list[bytes] = [fields[1] for _, fields in entries if fields[0] == _FIELD]
        except (IndexError, TypeError):
            payloads = []
        if len(payloads) != len(entries):
            bad = next(i for i, (_, f) in enumerate(entries) if f[:1] != [_FIELD] or len(f) < 2)
            raise CorruptLogError(
                self.location,
                None,
                first + bad,
                f"stream entry {entries[bad][0].decode()} has no field {_FIELD.decode()!r}",
                hint="the stream was written by something other than optuna-journal",
            )
        return payloads

    def _retrying(self, *command: Any) -> Any:
        """Send ``command`` (its key first), with retries."""
        return self._call(lambda: self._send(command)[0], self._retry_timeout, command[1])

    def _send(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send ``commands`` in one round trip on this backend's connection; their replies, as
        the server sends them (bytes, integers, lists).

        The connection is held, not taken from the client's pool for each command: redis-py's
        command layer (the pool, its retry wrapper, its telemetry hooks) added about 45 us to
        every command, half a loopback round trip here. An error reply is raised once every
        reply is read, so that the connection stays in step; a failed connection is closed,
        and the next command opens it again (asking the sentinels anew, behind a Sentinel URL).

        Raises:
            redis.exceptions.RedisError: The first error reply, or the connection failed.
        """
        with self._mutex:
            held = self._connection
            if held is None or held[1] != os.getpid():
                pooled = self._client.connection_pool.get_connection()
                held = self._connection = (cast(_Connection, pooled), os.getpid())
            connection = held[0]
            replies: list[Any] = []
            try:
                # connect() where it is closed: behind a Sentinel URL, that asks the sentinels
                # where the primary is (send_packed_command would reopen the old address).
                connection.connect()
                connection.send_packed_command(connection.pack_commands(commands))
                for _ in commands:
                    try:
                        replies.append(connection.read_response())
                    except redis.exceptions.ResponseError as err:
                        replies.append(err)
            except BaseException:
                connection.disconnect()
                raise
        for reply in replies:
            if isinstance(reply, redis.exceptions.ResponseError):
                raise reply
        return replies

    def _call(self, operation: Callable[[], T], budget: float, key: str | None = None) -> T:
        """Run ``operation`` on ``key`` (the log's by default), retrying transient failures
        with backoff for ``budget`` seconds.

        Raises:
            WrongTypeError: The key was replaced by a value of another type.
        """
        deadline = time.monotonic() + budget
        delay = 0.05
        failures = 0
        while True:
            try:
                result = operation()
            except _FATAL as err:
                raise JournalConnectionError(
                    f"{self.location}: the server refused our credentials: {err}"
                ) from err
            except _TRANSIENT as err:
                failures += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise JournalConnectionError(
                        f"{self.location}: no answer from the Redis server after {budget:.1f} s "
                        f"({failures} attempts): {err}"
                    ) from err
                moved = isinstance(err, redis.exceptions.MovedError)  # a cluster's routing
                if failures == 1:
                    _logger.log(
                        logging.INFO if moved else logging.WARNING,
                        "The Redis server at %s failed a command (%s: %s); retrying for up to "
                        "%.0f s.",
                        self.location,
                        type(err).__name__,
                        err,
                        left,
                    )
                time.sleep(min(delay * (0.5 + random.random()), left))
                delay = min(delay * 2, 2.0)
                if self._cluster is not None or moved:
                    with contextlib.suppress(*_TRANSIENT):  # else the next attempt fails, too
                        self._find_slot()
            except redis.exceptions.OutOfMemoryError as err:
                raise OSError(
                    errno.ENOSPC,
                    f"{self.location}: the Redis server is out of memory ({err}); nothing was "
                    "appended",
                ) from err
            except redis.exceptions.ResponseError as err:
                if "WRONGTYPE" not in str(err):
                    raise
                key = key or self._key
                kind = "stream" if key == self._key else "string"
                raise WrongTypeError(
                    f"{self.location}: the key {key} is no longer a {kind} ({err}): it was "
                    "replaced by a value of another type; nothing was written to it"
                ) from err
            else:
                if failures:
                    _logger.info("The Redis server at %s answers again.", self.location)
                return result


def _client(url: str, **options: Any) -> redis.Redis:
    """A client of the server ``url`` names; with ``redis+sentinel://``, of the primary its
    sentinels name now (redis-py asks them again on every new connection, so a client
    follows a failover once its old connection fails)."""
    if not url.startswith(_SENTINEL_SCHEME):
        return redis.Redis.from_url(url, **options)
    parts = urlsplit(url)
    service, _, db = parts.path.strip("/").partition("/")
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not service or (db and not db.isdigit()) or any(k not in _SENTINEL_AUTH for k, _ in query):
        raise ValueError(
            f"{_redacted(url)}: a Sentinel URL is redis+sentinel://[[user]:password@]host[:port]"
            "[,host[:port]...]/SERVICE[/DB], with no other query than journal=, replicas=, "
            "sentinel_username= and sentinel_password="
        )
    sentinels = []
    for address in parts.netloc.rpartition("@")[2].split(","):
        at = urlsplit(f"//{address}")
        sentinels.append((at.hostname or "localhost", at.port or 26379))
    sentinel_options = {
        k: v for k, v in options.items() if k.startswith("socket_") or k == "retry"
    }
    sentinel_options.update((_SENTINEL_AUTH[k], v) for k, v in query)
    sentinel = _Sentinel(sentinels, sentinel_kwargs=sentinel_options)
    primary = sentinel.master_for(  # type: ignore[no-untyped-call, unused-ignore]
        service,
        db=int(db or 0),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        **options,
    )
    return cast(redis.Redis, primary)


class _Sentinel(Sentinel):
    """redis-py's Sentinel, whose failure to find the primary says briefly why, and is a
    refusal of our credentials when a sentinel refused them: an error to raise at once, not
    a sentinel that is down, to retry (redis-py takes one for the other)."""

    def __init__(self, sentinels: list[tuple[str, int]], sentinel_kwargs: dict[str, Any]) -> None:
        super().__init__(sentinels, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call, unused-ignore]
        self.addresses = ",".join(f"{host}:{port}" for host, port in sentinels)

    def discover_master(self, service_name: str) -> tuple[str, int]:
        try:
            return cast("tuple[str, int]", super().discover_master(service_name))  # type: ignore[no-untyped-call, unused-ignore]
        except MasterNotFoundError as err:
            if "AuthenticationError" in str(err):
                raise redis.exceptions.AuthenticationError(
                    f"a sentinel at {self.addresses} did; a sentinel's own credentials go in "
                    "the URL's sentinel_password= (and sentinel_username=)"
                ) from err
            raise MasterNotFoundError(
                f"no sentinel at {self.addresses} answered with a primary for {service_name!r}"
            ) from err


def _cluster_enabled(client: redis.Redis) -> bool:
    """Whether the server is a node of a Redis Cluster (a server that hides INFO is not
    asked again: a cluster's first ``MOVED`` reply shows it)."""
    try:
        return bool(client.info("cluster").get("cluster_enabled"))
    except redis.exceptions.ResponseError:
        return False


def _reopen(
    url: str, name: str, connect_timeout: float, retry_timeout: float, replicas: int
) -> RedisBackend:
    return RedisBackend(
        url,
        name,
        connect_timeout=connect_timeout,
        retry_timeout=retry_timeout,
        replicas=replicas,
    )
