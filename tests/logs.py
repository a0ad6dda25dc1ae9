"""A log file's layout, for tests that cut or damage it at frame boundaries."""

from __future__ import annotations

from typing import NamedTuple

from optuna_journal.backends import frames


class Span(NamedTuple):
    start: int
    end: int
    mark: bool  # a durability mark, not a record


def spans(log: bytes) -> list[Span]:
    """The frames of a sound log file, after its magic, marks included."""
    out, pos = [], len(frames.MAGIC)
    while pos < len(log):
        mark = frames.read_mark(log, pos) is not None
        length = 8 if mark else int.from_bytes(log[pos : pos + 4], "little")
        out.append(Span(pos, pos + frames.HEADER_SIZE + length, mark))
        pos = out[-1].end
    assert pos == len(log), "not a sound log"
    return out


def records(log: bytes) -> list[Span]:
    """The frames of a sound log file that hold records (its marks left out)."""
    return [s for s in spans(log) if not s.mark]
