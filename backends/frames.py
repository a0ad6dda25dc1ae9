"""Length- and checksum-framed payloads on a byte stream (the file backend's medium).

A log file is ``MAGIC`` followed by frames. A frame is a 12-byte header, then the payload::

    u32 payload length | u32 crc32(payload) | u32 crc32(the previous 8 bytes)    (little endian)

The header's own checksum is what tells a torn tail from corruption: a frame whose header is
sound but whose payload runs past the end of the file is a write cut short (invisible to
readers, overwritten by the next writer); a header that fails its checksum, or a payload that
fails its own, is corruption. Stream media whose entries are already delimited (Redis) need
no framing. The loop over sound frames is C (``_frames.c``): a cold open runs it once per record.

A *durability mark* is a frame whose length field is ``0x80000008`` (bit 31 set, past
``MAX_PAYLOAD``, so a reader that predates marks stops at one as at damage) and whose 8-byte
payload is an offset ``D`` (u64): when the mark was written, bytes ``[0, D)`` of the log were
on stable storage. Marks are never returned as payloads. Writers that ``fsync`` after letting
others append (group commit) precede each synced append with one, so that after a power loss a
reader can tell frames lost before they were synced (no mark after them vouches for them)
from damage to the durable part (a later mark does).
"""

from __future__ import annotations

from collections.abc import Iterator
import struct
import zlib

from optuna_journal.backends._frames import scan

MAGIC = b"\x89OJL\r\n\x1a\n"
"""First 8 bytes of every log file (PNG-style: catches text-mode mangling and truncation)."""

_HEADER = struct.Struct("<III")
HEADER_SIZE = _HEADER.size
MAX_PAYLOAD = 1 << 30
_MARK_LENGTH = 0x8000_0008
_MARK_FIELD = _MARK_LENGTH.to_bytes(4, "little")
MARK_SIZE = HEADER_SIZE + 8


def pack(payload: bytes) -> bytes:
    """Frame one payload."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the frame limit {MAX_PAYLOAD}")
    head = struct.pack("<II", len(payload), zlib.crc32(payload))
    return head + struct.pack("<I", zlib.crc32(head)) + payload


def mark(durable: int) -> bytes:
    """A durability mark: bytes ``[0, durable)`` of the log are on stable storage."""
    body = durable.to_bytes(8, "little")
    head = struct.pack("<II", _MARK_LENGTH, zlib.crc32(body))
    return head + struct.pack("<I", zlib.crc32(head)) + body


def read_mark(buf: bytes, pos: int = 0) -> int | None:
    """The offset the sound mark at ``pos`` vouches for, or ``None`` if no mark is there."""
    frame = buf[pos : pos + MARK_SIZE]
    if len(frame) < MARK_SIZE or frame[:4] != _MARK_FIELD:
        return None
    length, crc, head_crc = _HEADER.unpack_from(frame)
    body = frame[HEADER_SIZE:]
    if zlib.crc32(frame[:8]) != head_crc or zlib.crc32(body) != crc:
        return None
    return int.from_bytes(body, "little")


def marks(buf: bytes) -> Iterator[tuple[int, int]]:
    """Every sound mark anywhere in ``buf``, frame boundaries unknown: ``(position, offset
    it vouches for)``. For finding marks past damage, where frames cannot be followed."""
    pos = buf.find(_MARK_FIELD)
    while pos >= 0:
        durable = read_mark(buf, pos)
        if durable is not None:
            yield pos, durable
        pos = buf.find(_MARK_FIELD, pos + 1)


class Parsed:
    """What :func:`parse` found in a buffer.

    Attributes:
        payloads: The complete, checked payloads, in order.
        stop: Offset in the buffer just after the last complete frame.
        need: When the next frame is incomplete, the bytes it needs from ``stop``; else 0.
        error: When the next frame is corrupt, what is wrong with it; else ``None``.
    """

    __slots__ = ("payloads", "stop", "need", "error")

    def __init__(self, payloads: list[bytes], stop: int, need: int, error: str | None) -> None:
        self.payloads = payloads
        self.stop = stop
        self.need = need
        self.error = error


def parse(buf: bytes, strict: bool = False) -> Parsed:
    """Split ``buf`` into frames; stop at the first incomplete or corrupt one.

    A sound frame's payload checksum also vouches for its length (a wrong length puts the
    checksum over the wrong bytes), so unless ``strict`` the header's own checksum is read only
    where a frame looks short or fails: there it tells a torn tail from a damaged header. One
    checksum per frame, not two, is a large part of the cost of opening a long log. ``strict``
    also finds damage confined to a header's checksum field, which hides no data.
    """
    payloads, pos = scan(buf, strict)  # the sound frames, in C; what stops it is judged here
    end = len(buf)
    if end - pos < HEADER_SIZE:
        return Parsed(payloads, pos, HEADER_SIZE if end > pos else 0, None)
    length, _, head_crc = _HEADER.unpack_from(buf, pos)
    if zlib.crc32(buf[pos : pos + 8]) != head_crc:
        return Parsed(payloads, pos, 0, "frame header fails its checksum")
    if length == _MARK_LENGTH:
        length = MARK_SIZE - HEADER_SIZE
    if length > MAX_PAYLOAD:
        return Parsed(payloads, pos, 0, f"frame length {length} exceeds the limit")
    if pos + HEADER_SIZE + length > end:
        return Parsed(payloads, pos, HEADER_SIZE + length, None)
    return Parsed(payloads, pos, 0, "frame payload fails its checksum")
