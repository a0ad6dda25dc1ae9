from __future__ import annotations

import struct
import zlib

from hypothesis import given
from hypothesis import strategies as st

from optuna_journal.backends import frames


@given(st.lists(st.binary(max_size=300), max_size=20))
def test_frames_parse_what_pack_wrote(payloads: list[bytes]) -> None:
    buf = b"".join(map(frames.pack, payloads))
    parsed = frames.parse(buf)
    assert parsed.payloads == payloads
    assert (parsed.stop, parsed.need, parsed.error) == (len(buf), 0, None)


@given(st.lists(st.binary(max_size=100), min_size=1, max_size=8), st.data())
def test_frames_torn_tail_is_never_returned_and_never_corrupt(
    payloads: list[bytes], data: st.DataObject
) -> None:
    buf = b"".join(map(frames.pack, payloads))
    cut = data.draw(st.integers(0, len(buf) - 1))
    parsed = frames.parse(buf[:cut])
    assert parsed.error is None
    assert parsed.payloads == payloads[: len(parsed.payloads)]
    assert parsed.need > 0 or parsed.stop == cut


@given(st.lists(st.binary(min_size=1, max_size=100), min_size=2, max_size=8), st.data())
def test_frames_flipped_byte_before_the_tail_is_reported(
    payloads: list[bytes], data: st.DataObject
) -> None:
    buf = bytearray(b"".join(map(frames.pack, payloads)))
    first_len = frames.HEADER_SIZE + len(payloads[0])
    at = data.draw(st.integers(0, first_len - 1))
    buf[at] ^= 1 << data.draw(st.integers(0, 7))
    parsed = frames.parse(bytes(buf), strict=True)
    assert parsed.payloads == []
    # A flipped length bit may make the frame look longer than the buffer: only then is it
    # indistinguishable from a torn tail, and only if the header checksum still matches.
    assert parsed.error is not None


@given(st.lists(st.binary(min_size=1, max_size=100), min_size=2, max_size=8), st.data())
def test_frames_replay_finds_every_flip_that_changes_data(
    payloads: list[bytes], data: st.DataObject
) -> None:
    """Without ``strict``, only the header's own checksum field goes unread where the frame
    is sound: a flip anywhere else (length, payload checksum, payload) is still reported."""
    buf = bytearray(b"".join(map(frames.pack, payloads)))
    at = data.draw(
        st.integers(0, frames.HEADER_SIZE + len(payloads[0]) - 1).filter(
            lambda i: not 8 <= i < frames.HEADER_SIZE
        )
    )
    buf[at] ^= 1 << data.draw(st.integers(0, 7))
    parsed = frames.parse(bytes(buf))
    assert parsed.payloads == []
    assert parsed.error is not None


def test_frames_length_near_4_gib_with_a_sound_header_is_corrupt_not_torn() -> None:
    """A header that says its payload is over the frame limit is corruption, whatever the
    buffer holds after it (and lengths up to 4 GiB never overflow the scan's arithmetic)."""
    for length in (frames.MAX_PAYLOAD + 1, 2**31, 2**32 - 1):
        head = struct.pack("<II", length, 0)
        buf = frames.pack(b"ok") + head + struct.pack("<I", zlib.crc32(head)) + b"x" * 64
        parsed = frames.parse(buf)
        assert parsed.payloads == [b"ok"]
        assert parsed.error == f"frame length {length} exceeds the limit"


def test_frames_empty_payload_is_read_only_with_a_sound_header() -> None:
    """An empty payload's checksum is 0, so its header's own checksum decides."""
    empty = frames.pack(b"")
    assert frames.parse(empty + frames.pack(b"next")).payloads == [b"", b"next"]
    damaged = empty[:8] + bytes(4) + frames.pack(b"next")
    parsed = frames.parse(damaged)
    assert (parsed.payloads, parsed.stop) == ([], 0)
    assert parsed.error == "frame header fails its checksum"
