"""Hostile input: damaged and forged logs and snapshots, odd buffers for the C frame scanner,
odd names and values, file modes and symlinks.

A reader handed any bytes either answers or raises one of the errors of
:mod:`optuna_journal.errors`; a snapshot that is damaged or lies never changes an answer; a
value that cannot be stored and read back exactly is refused before anything is appended.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import contextlib
from dataclasses import dataclass
import logging
import os
from pathlib import Path
import random
import stat
import struct
import tempfile
import tracemalloc
from typing import Any
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import msgspec
import optuna
from optuna.trial import FrozenTrial, TrialState
import pytest

from optuna_journal import CorruptLogError, FileBackend, JournalError, JournalStorage
from optuna_journal.backends import frames
from optuna_journal.backends._frames import scan
from optuna_journal.records import RECORD_TAGS
from optuna_journal.replay import snapshot
from optuna_journal.verify import verify
from tests import logs
from tests.soak import SOAK, slow
from tests.strategies import json_values

optuna.logging.set_verbosity(optuna.logging.WARNING)

STUDY = "hostile"
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# A real journal to damage.


@dataclass(frozen=True)
class Base:
    """A small journal as written by JournalStorage, cut into its frames, and its snapshot."""

    frames: list[bytes]  # the log's frames after MAGIC: the header, the records, the marks
    snapshot: bytes
    trials: list[FrozenTrial]

    @property
    def log(self) -> bytes:
        return frames.MAGIC + b"".join(self.frames)

    @property
    def records(self) -> list[bytes]:
        """The payloads of the records after the header."""
        return [p[frames.HEADER_SIZE :] for p in self.frames if not _is_mark(p)][1:]

    @property
    def header_at(self) -> int:
        """The index of the header's frame (after the log's first mark)."""
        return next(i for i, p in enumerate(self.frames) if not _is_mark(p))


def _is_mark(frame: bytes) -> bool:
    return frames.read_mark(frame) is not None


def _record_number(parts: list[bytes], at: int) -> int:
    """The number of the record in frame ``at``: marks are not records."""
    return sum(not _is_mark(p) for p in parts[:at])


def _write_study(path: Path, n_trials: int = 4, seed: int = 0) -> JournalStorage:
    storage = JournalStorage(FileBackend(path), snapshot_every=0)
    study = optuna.create_study(
        storage=storage, study_name=STUDY, sampler=optuna.samplers.RandomSampler(seed)
    )
    study.set_user_attr("owner", {"name": "x", "tags": ["a", "b"]})

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -1, 1)
        trial.suggest_int("n", 1, 8, log=True)
        trial.suggest_categorical("c", [1, True, "1", None])
        trial.set_user_attr("note", f"trial {trial.number}")
        for step in range(3):
            trial.report(x * step, step)
        return x * x

    study.optimize(objective, n_trials=n_trials)
    return storage


def _split(log: bytes) -> list[bytes]:
    """The frames of a sound log (after MAGIC), marks included."""
    return [log[s.start : s.end] for s in logs.spans(log)]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    path = tmp_path_factory.mktemp("base") / "base.journal"
    storage = _write_study(path)
    storage.snapshot()
    log = path.read_bytes()
    parts = _split(log)
    assert frames.MAGIC + b"".join(parts) == log and len(parts) > 20
    trials = storage.get_all_trials(storage.get_study_id_from_name(STUDY))
    return Base(parts, Path(f"{path}.snapshot").read_bytes(), trials)


def _all_trials(storage: JournalStorage) -> list[list[FrozenTrial]]:
    return [storage.get_all_trials(s._study_id) for s in storage.get_all_studies()]


def _open_and_read(path: Path) -> list[list[FrozenTrial]] | JournalError:
    """Every study's trials, or the documented error reading them raised; anything else
    propagates (and fails the test)."""
    try:
        return _all_trials(JournalStorage(FileBackend(path), snapshot_every=0))
    except JournalError as err:
        return err


def _check_reader(path: Path) -> list[list[FrozenTrial]] | JournalError:
    """Open and read the log at ``path`` and verify it: only documented errors, and verify
    agrees with the reader (a log it calls sound reads without error, and a log the reader
    fails on it does not call sound)."""
    read = _open_and_read(path)
    try:
        report = verify(str(path))
    except JournalError as err:
        assert isinstance(read, JournalError), f"verify raised {err!r}, the reader did not"
        return read
    if report.sound:
        assert not isinstance(read, JournalError), (read, report.lines())
    if isinstance(read, JournalError):
        assert not report.sound, (read, report.lines())
    return read


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory)


# Hostile payloads: frames with a sound checksum whose payload is no record.

DEEP_ARRAY = b"\x91" * 100_000 + b"\xc0"
DEEP_MAP = b"\x81\xa1k" * 50_000 + b"\xc0"


def _array(items: list[bytes]) -> bytes:
    """A msgpack array of already encoded items."""
    n = len(items)
    head = bytes([0x90 | n]) if n < 16 else b"\xdc" + struct.pack(">H", n)
    return head + b"".join(items)


@st.composite
def hostile_payloads(draw: st.DrawFn, records: list[bytes]) -> bytes:
    kind = draw(st.sampled_from(["random", "shape", "field", "tag", "deep", "deep-field"]))
    if kind == "random":
        return draw(st.binary(max_size=64))
    if kind == "shape":  # valid msgpack, not a record
        return msgspec.msgpack.encode(draw(json_values))
    if kind == "deep":
        return draw(st.sampled_from([DEEP_ARRAY, DEEP_MAP]))
    raw = msgspec.msgpack.decode(draw(st.sampled_from(records)))
    assert isinstance(raw, list)
    if kind == "tag":  # a kind this version does not know
        raw[0] = draw(st.text(max_size=12).filter(lambda t: t not in RECORD_TAGS))
        return msgspec.msgpack.encode(raw)
    at = draw(st.integers(1, len(raw) - 1))
    if kind == "field":  # one field of the wrong type
        raw[at] = draw(json_values.filter(lambda v: type(v) is not type(raw[at])))
        return msgspec.msgpack.encode(raw)
    # deep-field: a real record whose field is msgpack nested 100,000 deep
    items = [msgspec.msgpack.encode(v) for v in raw]
    items[at] = DEEP_ARRAY
    return _array(items)


def _header(length: int, payload_crc: int, fix: bool, head_crc: int = 0) -> bytes:
    """A frame header; with ``fix``, its own checksum is right, else it is ``head_crc``."""
    head = struct.pack("<II", length, payload_crc)
    return head + struct.pack("<I", zlib.crc32(head) if fix else head_crc)


@st.composite
def mutated_logs(draw: st.DrawFn, base: Base) -> bytes:
    """The base log with its frames duplicated, removed, forged, given a length of
    0xFFFFFFFF, and then its bytes flipped or cut."""
    parts = list(base.frames)
    records = base.records
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["dup", "remove", "forge", "huge", "flip", "cut"]))
        if op in ("flip", "cut"):
            data = bytearray(frames.MAGIC + b"".join(parts))
            at = draw(st.integers(0, len(data) - 1))
            if op == "flip":
                data[at] ^= 1 << draw(st.integers(0, 7))
            else:
                del data[at:]
            return bytes(data)  # byte damage last: the frame list no longer holds
        i = draw(st.integers(0, len(parts) - 1))
        if op == "dup":
            parts.insert(draw(st.integers(i + 1, len(parts))), parts[i])
        elif op == "remove" and len(parts) > 1:
            del parts[i]
        elif op == "forge":
            parts.insert(i, frames.pack(draw(hostile_payloads(records))))
        elif op == "huge":
            old = parts[i]
            crc = int.from_bytes(old[4:8], "little")
            parts[i] = _header(0xFFFFFFFF, crc, draw(st.booleans())) + old[frames.HEADER_SIZE :]
    return frames.MAGIC + b"".join(parts)


@FUZZ
@given(data=st.data())
@pytest.mark.timeout(300)
def test_mutated_log_reads_or_raises_only_documented_errors(
    base: Base, data: st.DataObject
) -> None:
    log = data.draw(mutated_logs(base))
    with _scratch() as directory:
        path = directory / "m.journal"
        path.write_bytes(log)
        _check_reader(path)


@FUZZ
@given(data=st.data())
@pytest.mark.timeout(300)
def test_duplicated_frames_are_applied_once(base: Base, data: st.DataObject) -> None:
    parts = list(base.frames)
    for _ in range(data.draw(st.integers(1, 5))):
        # Not the header (record 0 is unique), nor the first mark before it (it marks a log
        # that carries marks; another before the header would hide that).
        i = data.draw(st.integers(base.header_at + 1, len(parts) - 1))
        parts.insert(data.draw(st.integers(i + 1, len(parts))), parts[i])
    with _scratch() as directory:
        path = directory / "d.journal"
        path.write_bytes(frames.MAGIC + b"".join(parts))
        assert _check_reader(path) == [base.trials]
        assert verify(str(path)).sound


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(DEEP_ARRAY, id="array-100000-deep"),
        pytest.param(DEEP_MAP, id="map-50000-deep"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\xc1", id="never-used-byte"),
        pytest.param(msgspec.msgpack.encode({"op": "trial.created"}), id="map"),
        pytest.param(msgspec.msgpack.encode(["trial.teleported", "w", 1, 0]), id="unknown-tag"),
    ],
)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.timeout(60)
def test_forged_frame_raises_a_documented_error_naming_the_record(
    tmp_path: Path, base: Base, payload: bytes, where: str
) -> None:
    parts = list(base.frames)
    at = {"first": 0, "middle": len(parts) // 2, "last": len(parts)}[where]
    parts.insert(at, frames.pack(payload))
    path = tmp_path / "f.journal"
    path.write_bytes(frames.MAGIC + b"".join(parts))
    read = _check_reader(path)
    assert isinstance(read, JournalError)
    assert str(path) in str(read) and f"record {_record_number(parts, at)}" in str(read)
    assert not verify(str(path)).sound


@pytest.mark.parametrize("fix_header_crc", [True, False], ids=["header-crc-ok", "header-crc-bad"])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.timeout(60)
def test_frame_claiming_4_gib_allocates_no_more_than_the_file(
    tmp_path: Path, base: Base, where: str, fix_header_crc: bool
) -> None:
    parts = list(base.frames)
    records = [i for i, p in enumerate(parts) if not _is_mark(p)]
    i = {"first": records[0], "middle": records[len(records) // 2], "last": records[-1]}[where]
    crc = int.from_bytes(parts[i][4:8], "little")
    parts[i] = _header(0xFFFFFFFF, crc, fix_header_crc) + parts[i][frames.HEADER_SIZE :]
    path = tmp_path / "h.journal"
    path.write_bytes(frames.MAGIC + b"".join(parts))
    tracemalloc.start()
    try:
        read = _open_and_read(path)
        report = verify(str(path))
        backend = FileBackend(path)
        try:
            backend.head()
        except JournalError:
            pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"{peak} bytes allocated to read a {path.stat().st_size}-byte log"
    assert not report.sound
    offset = len(frames.MAGIC) + sum(map(len, parts[:i]))
    number = _record_number(parts, i)
    if where == "last":
        # No mark after it vouches for it: to a reader, what a power loss may leave of an
        # append not yet synced, a torn tail (see test_power_loss.py).
        assert not isinstance(read, JournalError) and read[0][:-1] == base.trials[:-1]
        assert read[0][-1].state == TrialState.RUNNING  # the last record (it ends the trial)
        assert f"torn tail: {path.stat().st_size - offset} bytes" in report.problems[0]
        return
    # A length past the frame limit is damage, not a torn tail, where a later mark says the
    # bytes were durable.
    assert isinstance(read, CorruptLogError)
    assert (read.offset, read.record) == (offset, number)
    assert f"byte offset {offset} (record {number})" in "\n".join(report.lines())


# The C scanner, directly.


def _reference_scan(buf: bytes, strict: bool) -> tuple[list[bytes], int]:
    """scan() from the format in backends/frames.py: sound frames from the start, stopping at
    the first whose payload runs past the end or fails its CRC, or whose header fails its own
    CRC where the header's CRC is read (always when strict; for empty payloads and marks
    always). Marks (length field 0x80000008, 8 bytes of payload) are skipped."""
    payloads, pos = [], 0
    while len(buf) - pos >= frames.HEADER_SIZE:
        length, crc, head_crc = struct.unpack_from("<III", buf, pos)
        mark = length == 0x8000_0008
        length = 8 if mark else length
        start = pos + frames.HEADER_SIZE
        if length > len(buf) - start or zlib.crc32(buf[start : start + length]) != crc:
            break
        if (strict or length == 0 or mark) and zlib.crc32(buf[pos : pos + 8]) != head_crc:
            break
        if not mark:
            payloads.append(buf[start : start + length])
        pos = start + length
    return payloads, pos


def _odd_buffers() -> list[bytes]:
    sound = frames.pack(b"payload")
    empty = frames.pack(b"")
    out = [b"", *(bytes(n) for n in range(1, 12)), *(b"\xff" * n for n in range(1, 12))]
    out += [sound[:n] for n in range(len(sound))]  # every cut of a frame, header only included
    out += [
        empty,
        _header(0, 0, False),  # an empty payload whose header fails its check
        _header(0xFFFFFFFF, 0, True),
        _header(0xFFFFFFFF, 0, True) + b"x" * 100,
        _header(100, zlib.crc32(b"x" * 10), True) + b"x" * 10,  # length past the end
        _header(7, zlib.crc32(b"payload"), False, 1) + b"payload",  # header CRC wrong only
        sound + sound[:-1],
        sound * 3 + b"\x00",
        empty * 5,
        frames.mark(7) + sound + frames.mark(1 << 63),
        frames.mark(7)[:-1],
        _header(0x8000_0008, zlib.crc32(bytes(8)), False) + bytes(8),  # a mark, header CRC bad
        sound + frames.mark(0)[:12] + b"\x00" * 8,  # a mark whose payload fails its CRC
    ]
    return out


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview], ids=lambda w: w.__name__)
def test_scan_of_odd_buffers_agrees_with_the_reference(
    wrap: Callable[[bytes], Any], strict: bool
) -> None:
    buffers = _odd_buffers()
    for buf in buffers:
        assert scan(wrap(buf), strict) == _reference_scan(buf, strict), buf[:40]
    assert scan(b"") == ([], 0)
    assert scan(frames.pack(b"payload"), strict) == ([b"payload"], 19)
    # A header whose own CRC alone is wrong passes the fast check, not the strict one.
    only_head = _header(7, zlib.crc32(b"payload"), False, 1) + b"payload"
    assert scan(only_head, strict) == (([], 0) if strict else ([b"payload"], 19))


@pytest.mark.parametrize(
    "arg",
    [None, "frames", 12, 1.5, [b"x"], memoryview(frames.pack(b"abc") * 2)[::2]],
    ids=["none", "str", "int", "float", "list", "strided-memoryview"],
)
def test_scan_refuses_what_is_no_contiguous_buffer_with_a_type_error(arg: object) -> None:
    with pytest.raises(TypeError):
        scan(arg)  # type: ignore[arg-type]


def test_scan_takes_only_a_buffer_and_a_flag() -> None:
    with pytest.raises(TypeError):
        scan()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        scan(b"", False, 3)  # type: ignore[call-arg]
    assert scan(memoryview(frames.pack(b"ab") + b"tail")[:14]) == ([b"ab"], 14)


@st.composite
def frame_soup(draw: st.DrawFn) -> bytes:
    """Buffers of sound frames, broken frames and noise."""
    out = b""
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["sound", "noise", "length", "crc", "head", "cut"]))
        payload = draw(st.binary(max_size=40))
        frame = frames.pack(payload)
        if kind == "noise":
            frame = draw(st.binary(max_size=30))
        elif kind == "length":
            length = draw(st.sampled_from([0, len(payload) + 1, 0xFFFFFFFF, 1 << 30]))
            frame = _header(length, zlib.crc32(payload), draw(st.booleans())) + payload
        elif kind == "crc":
            frame = _header(len(payload), zlib.crc32(payload) ^ 1, True) + payload
        elif kind == "head":
            frame = frame[:8] + bytes([frame[8] ^ 1]) + frame[9:]
        elif kind == "cut":
            frame = frame[: draw(st.integers(0, len(frame)))]
        out += frame
    return out


@settings(max_examples=200, deadline=None)
@given(frame_soup() | st.binary(max_size=200), st.booleans())
def test_scan_agrees_with_the_reference_parse(buf: bytes, strict: bool) -> None:
    expected = _reference_scan(buf, strict)
    assert scan(buf, strict) == expected
    assert scan(bytearray(buf), strict) == expected
    parsed = frames.parse(buf, strict)
    assert (parsed.payloads, parsed.stop) == expected


# Snapshots: damaged ones, and ones that lie.


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _warnings() -> Iterator[list[str]]:
    handler = _Warnings()
    logger = logging.getLogger("optuna.journal.storage")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def _open_beside(log: bytes, snap: bytes) -> tuple[list[list[FrozenTrial]], list[str]]:
    """Open ``log`` with ``snap`` beside it; return every study's trials and the warnings."""
    with _scratch() as directory, _warnings() as warned:
        path = directory / "s.journal"
        path.write_bytes(log)
        Path(f"{path}.snapshot").write_bytes(snap)
        storage = JournalStorage(FileBackend(path), snapshot_every=0)
        return _all_trials(storage), list(warned)


@st.composite
def mutated_snapshots(draw: st.DrawFn, snap: bytes) -> bytes:
    data = bytearray(snap)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "set", "garbage", "reframe"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "garbage":
            data = bytearray(draw(st.binary(max_size=100)))
        elif op == "reframe":  # a sound frame of a slice of the payload: a valid CRC
            payload = snap[len(snapshot.MAGIC) + frames.HEADER_SIZE :]
            lo = draw(st.integers(0, len(payload)))
            piece = payload[lo : draw(st.integers(lo, len(payload)))]
            data = bytearray(snapshot.MAGIC + frames.pack(piece))
    return bytes(data)


def _payloads(snap: bytes) -> list[bytes] | None:
    if not snap.startswith(snapshot.MAGIC):
        return None
    parsed = frames.parse(snap[len(snapshot.MAGIC) :])
    return None if parsed.error else parsed.payloads


@FUZZ
@given(data=st.data())
@pytest.mark.timeout(300)
def test_damaged_snapshot_is_ignored_and_answers_equal_a_full_replay(
    base: Base, data: st.DataObject
) -> None:
    snap = data.draw(mutated_snapshots(base.snapshot))
    trials, warned = _open_beside(base.log, snap)
    assert trials == [base.trials]
    if _payloads(snap) != _payloads(base.snapshot):  # its content changed: it was refused
        assert any("ignoring its snapshot" in w for w in warned), warned


def test_the_undamaged_snapshot_is_used_and_not_warned_about(base: Base) -> None:
    trials, warned = _open_beside(base.log, base.snapshot)
    assert trials == [base.trials] and not warned


def _edit_snapshot(snap: bytes, edit: Callable[[snapshot.Snapshot], None]) -> bytes:
    """Decode a snapshot, edit it, encode and frame it again with a valid CRC, keeping the
    digest it had (a tool that knows the layout but not the key)."""
    (payload,) = frames.parse(snap[len(snapshot.MAGIC) :]).payloads
    body, digest = payload[: -snapshot.DIGEST_SIZE], payload[-snapshot.DIGEST_SIZE :]
    decoded = msgspec.msgpack.decode(body, type=snapshot.Snapshot)
    edit(decoded)
    return snapshot.MAGIC + frames.pack(msgspec.msgpack.encode(decoded) + digest)


def _add_one_to_the_first_value(s: snapshot.Snapshot) -> None:
    row = s.studies[0].trials[0]
    assert row.values is not None
    row.values = [row.values[0] + 1.0]


def test_lying_snapshot_with_an_edited_value_is_ignored(base: Base) -> None:
    lie = _edit_snapshot(base.snapshot, _add_one_to_the_first_value)
    assert _payloads(lie) is not None  # a sound frame: its CRC alone would pass it
    trials, warned = _open_beside(base.log, lie)
    assert trials == [base.trials]
    assert any("ignoring its snapshot" in w and "digest" in w for w in warned), warned


def test_lying_snapshot_reframed_without_its_digest_is_ignored(base: Base) -> None:
    (payload,) = frames.parse(base.snapshot[len(snapshot.MAGIC) :]).payloads
    decoded = msgspec.msgpack.decode(payload[: -snapshot.DIGEST_SIZE], type=snapshot.Snapshot)
    _add_one_to_the_first_value(decoded)
    lie = snapshot.MAGIC + frames.pack(msgspec.msgpack.encode(decoded))  # the old layout
    trials, warned = _open_beside(base.log, lie)
    assert trials == [base.trials]
    assert any("ignoring its snapshot" in w for w in warned), warned


def test_lying_snapshot_of_another_journal_is_ignored(tmp_path: Path, base: Base) -> None:
    other = tmp_path / "other.journal"
    _write_study(other, n_trials=6, seed=1).snapshot()
    trials, warned = _open_beside(base.log, Path(f"{other}.snapshot").read_bytes())
    assert trials == [base.trials]
    assert any("another log" in w for w in warned), warned


def test_lying_snapshot_of_another_journal_given_this_head_is_ignored(
    tmp_path: Path, base: Base
) -> None:
    other = tmp_path / "other.journal"
    _write_study(other, n_trials=6, seed=1).snapshot()
    head = base.frames[base.header_at][frames.HEADER_SIZE :]

    def retarget(s: snapshot.Snapshot) -> None:
        s.head = head

    lie = _edit_snapshot(Path(f"{other}.snapshot").read_bytes(), retarget)
    trials, warned = _open_beside(base.log, lie)
    assert trials == [base.trials]
    assert any("digest" in w for w in warned), warned


def test_lying_snapshot_ahead_of_a_log_cut_short_is_ignored(base: Base) -> None:
    cut = len(base.frames) * 2 // 3
    short = frames.MAGIC + b"".join(base.frames[:cut])
    with _scratch() as directory:
        path = directory / "short.journal"
        path.write_bytes(short)
        expected = _all_trials(JournalStorage(FileBackend(path), snapshot_every=0))
    trials, warned = _open_beside(short, base.snapshot)
    assert trials == expected
    assert any("ahead of the log" in w for w in warned), warned


def test_lying_snapshot_with_its_cursor_moved_past_the_end_is_ignored(base: Base) -> None:
    def ahead(s: snapshot.Snapshot) -> None:
        s.cursor = (s.cursor[0] + 10, int(s.cursor[1]) + 10_000)

    trials, warned = _open_beside(base.log, _edit_snapshot(base.snapshot, ahead))
    assert trials == [base.trials]
    assert any("ignoring its snapshot" in w for w in warned), warned


def test_old_format_snapshot_is_ignored(base: Base) -> None:
    def old(s: snapshot.Snapshot) -> None:
        s.format = snapshot.FORMAT - 1

    trials, warned = _open_beside(base.log, _edit_snapshot(base.snapshot, old))
    assert trials == [base.trials]
    assert any("of format" in w for w in warned), warned


# Names and values.


def _deep(depth: int, kind: type) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value] if kind is list else {"k": value}
    return value


class _Opaque:
    pass


ODD_STRINGS = {
    "slash": "a/b/../c",
    "nul": "a\x00b",
    "megabyte": "x" * (1 << 20),
    "surrogate": "\udcff",
    "emoji": "\U0001f600",
}
ODD_VALUES: dict[str, Any] = {
    **ODD_STRINGS,
    "list-1000-deep": _deep(1000, list),
    "dict-1000-deep": _deep(1000, dict),
    "list-50-deep": _deep(50, list),
    "set": {1, 2},
    "frozenset": frozenset({"a"}),
    "set-inside": [1, {"k": {3}}],
    "object": _Opaque(),
    "object-inside": {"k": [_Opaque()]},
    "bytes": b"\x00\xff",
    "int-keys": {1: "a"},
}
REFUSED = {"surrogate", "list-1000-deep", "dict-1000-deep", "set", "frozenset", "set-inside"}
REFUSED |= {"object", "object-inside"}


def _refused_or_stored(path: Path, call: Callable[[], object], name: str) -> bool:
    """Run ``call``: it stores, or refuses with a TypeError or ValueError naming ``name``
    before anything is appended. Return whether it stored."""
    size = path.stat().st_size
    try:
        call()
    except (TypeError, ValueError) as err:
        assert repr(name)[:60] in str(err), err
        assert path.stat().st_size == size, "a refused call appended to the log"
        return False
    return True


@pytest.mark.timeout(120)
def test_odd_study_names_are_stored_exactly_or_refused_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "n.journal"
    storage = JournalStorage(FileBackend(path))
    storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "first")
    stored = []
    for name in ODD_STRINGS.values():
        create = lambda name=name: storage.create_new_study(  # noqa: E731
            [optuna.study.StudyDirection.MINIMIZE], name
        )
        if _refused_or_stored(path, create, name):
            stored.append(name)
    assert stored == [s for k, s in ODD_STRINGS.items() if k != "surrogate"]
    reopened = JournalStorage(FileBackend(path))
    assert [s.study_name for s in reopened.get_all_studies()] == ["first", *stored]
    for name in stored:
        assert reopened.get_study_name_from_id(reopened.get_study_id_from_name(name)) == name
    assert verify(str(path)).sound


@pytest.mark.timeout(120)
def test_odd_attrs_are_stored_exactly_or_refused_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "a.journal"
    storage = JournalStorage(FileBackend(path))
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    trial_id = storage.create_new_trial(study_id)
    kept: dict[str, Any] = {}
    for key, value in ODD_VALUES.items():
        setters = [
            lambda k=key, v=value: storage.set_trial_user_attr(trial_id, k, v),
            lambda k=key, v=value: storage.set_trial_system_attr(trial_id, k, v),
            lambda k=key, v=value: storage.set_study_user_attr(study_id, k, v),
            lambda k=key, v=value: storage.set_study_system_attr(study_id, k, v),
        ]
        outcomes = {_refused_or_stored(path, setter, key) for setter in setters}
        assert len(outcomes) == 1, f"{key}: stored by some setters, refused by others"
        if outcomes == {True}:
            kept[key] = value
    assert set(kept) == set(ODD_VALUES) - REFUSED
    odd_keys: dict[str, Any] = {}
    for key in ODD_STRINGS.values():  # odd strings as keys
        setter = lambda k=key: storage.set_trial_user_attr(trial_id, k, 1)  # noqa: E731
        if _refused_or_stored(path, setter, key):
            odd_keys[key] = 1
    assert set(odd_keys) == set(ODD_STRINGS.values()) - {"\udcff"}

    # The log stays readable: a new storage reads every kept value back exactly.
    reopened = JournalStorage(FileBackend(path), snapshot_every=0)
    trial = reopened.get_trial(trial_id)
    assert trial.user_attrs == {**kept, **odd_keys}
    assert trial.system_attrs == kept
    assert reopened.get_study_user_attrs(study_id) == kept
    assert reopened.get_study_system_attrs(study_id) == kept
    assert verify(str(path)).sound

    # ... and so does one opened from a snapshot.
    reopened.snapshot()
    from_snapshot = JournalStorage(FileBackend(path))
    assert from_snapshot.get_trial(trial_id) == trial
    assert from_snapshot.get_study_system_attrs(study_id) == kept


def test_an_attr_key_or_study_name_that_is_no_str_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.journal"
    storage = JournalStorage(FileBackend(path))
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    size = path.stat().st_size
    with pytest.raises(TypeError, match="str"):
        storage.set_study_user_attr(study_id, 7, "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="study name must be str"):
        storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], b"b")  # type: ignore[arg-type]
    assert path.stat().st_size == size


# Files: modes and symlinks.


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(p: str | Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.mark.parametrize("mask", [0o077, 0o022, 0o002], ids=oct)
def test_files_are_created_with_the_users_umask(tmp_path: Path, mask: int) -> None:
    path = tmp_path / "u.journal"
    lease = tmp_path / "l.journal"
    with _umask(mask):
        storage = JournalStorage(FileBackend(path, lock="flock"), snapshot_every=0)
        storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
        storage.snapshot()
        other = JournalStorage(FileBackend(lease, lock="lease"), snapshot_every=0)
        other.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
        other.snapshot()
    assert _mode(path) == 0o666 & ~mask
    assert _mode(f"{path}.snapshot") == 0o666 & ~mask
    assert _mode(f"{path}.flock") == 0o644 & ~mask  # a lock holds no data
    assert _mode(lease) == 0o666 & ~mask
    assert _mode(f"{lease}.snapshot") == 0o666 & ~mask
    assert _mode(f"{lease}.lock") == 0o777 & ~mask


def test_a_symlinked_log_path_is_followed(tmp_path: Path) -> None:
    real_dir, link_dir = tmp_path / "real", tmp_path / "links"
    real_dir.mkdir()
    link_dir.mkdir()
    real = real_dir / "r.journal"
    link = link_dir / "l.journal"
    link.symlink_to(real)  # dangling until the first write creates the real file
    via_link = JournalStorage(FileBackend(link), snapshot_every=0)
    via_link.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    assert link.is_symlink() and real.is_file() and real.stat().st_size > 0
    via_real = JournalStorage(FileBackend(real), snapshot_every=0)
    via_real.create_new_study([optuna.study.StudyDirection.MINIMIZE], "t")
    via_link.snapshot()
    assert os.path.exists(f"{real}.snapshot")
    assert os.listdir(link_dir) == ["l.journal"]  # no lock or snapshot beside the link
    assert [s.study_name for s in via_link.get_all_studies()] == ["s", "t"]
    assert FileBackend(link).location == str(real)
    assert [s.study_name for s in JournalStorage(FileBackend(link)).get_all_studies()] == [
        "s",
        "t",
    ]


# The long random-mutation run.


def _random_mutation(rng: random.Random, base: Base, records: list[bytes]) -> bytes:
    parts = list(base.frames)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(parts))
        op = rng.choice(["dup", "remove", "forge", "huge", "noise"])
        if op == "dup":
            parts.insert(rng.randint(i + 1, len(parts)), parts[i])
        elif op == "remove" and len(parts) > 1:
            del parts[i]
        elif op == "forge":
            raw = msgspec.msgpack.decode(rng.choice(records))
            raw[rng.randrange(len(raw))] = rng.choice([None, -1, "x", 1.5, [], {}, b"\0"])
            choice = rng.choice([msgspec.msgpack.encode(raw), DEEP_ARRAY, rng.randbytes(20)])
            parts.insert(i, frames.pack(choice))
        elif op == "huge":
            crc = int.from_bytes(parts[i][4:8], "little")
            parts[i] = _header(0xFFFFFFFF, crc, rng.random() < 0.5) + parts[i][12:]
        else:
            parts.insert(i, rng.randbytes(rng.randint(1, 30)))
    data = bytearray(frames.MAGIC + b"".join(parts))
    for _ in range(rng.randint(0, 3)):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    if rng.random() < 0.3:
        del data[rng.randrange(len(data)) :]
    return bytes(data)


@slow
def test_long_random_mutation_run_raises_only_documented_errors(
    tmp_path: Path, base: Base
) -> None:
    cases = 20_000 if SOAK else 200
    rng = random.Random(20261207)
    records = base.records
    path = tmp_path / "long.journal"
    outcomes: dict[str, int] = {}
    run = 0
    for _ in range(cases):
        path.write_bytes(_random_mutation(rng, base, records))
        read = _check_reader(path)
        kind = type(read).__name__ if isinstance(read, JournalError) else "read"
        outcomes[kind] = outcomes.get(kind, 0) + 1
        run += 1
    assert run == cases == sum(outcomes.values())
    print(f"mutation run: {cases} cases, outcomes {dict(sorted(outcomes.items()))}")
    assert outcomes.get("read", 0) > 0 and outcomes.get("CorruptLogError", 0) > 0, outcomes
