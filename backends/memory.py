"""A log in a Python list: for tests and single-process use.

Atomic and durable only within the process. A pickled ``MemoryBackend`` carries its records
by value (there is no location to reopen), like Optuna's ``InMemoryStorage``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import threading
from typing import Any

from optuna_journal.backends.base import Batch, Cursor


class MemoryBackend:
    """A log held in memory by this process, starting with ``payloads`` (a copy of another
    log's, say)."""

    def __init__(self, payloads: Sequence[bytes] = ()) -> None:
        self._payloads: list[bytes] = list(payloads)
        self._snapshot: bytes | None = None
        self._lock = threading.Lock()

    @property
    def location(self) -> str:
        return f"memory:{id(self):#x}"

    def append(
        self, payloads: Sequence[bytes], sync: bool = True, after: Cursor | None = None
    ) -> None:
        with self._lock:
            self._payloads.extend(payloads)

    def append_head(self, payload: bytes) -> None:
        with self._lock:
            if not self._payloads:
                self._payloads.append(payload)

    def read(self, after: Cursor | None = None) -> Iterator[Batch]:
        start = 0 if after is None else after.records
        with self._lock:
            payloads = self._payloads[start:]
        if payloads:
            end = start + len(payloads)
            yield Batch(Cursor(end, end), payloads)

    def head(self) -> bytes | None:
        with self._lock:
            return self._payloads[0] if self._payloads else None

    def locate(self, cursor: Cursor) -> Cursor | None:
        with self._lock:
            return cursor if cursor.records <= len(self._payloads) else None

    def save_snapshot(self, data: bytes) -> None:
        self._snapshot = data

    def load_snapshot(self) -> bytes | None:
        return self._snapshot

    def __getstate__(self) -> dict[str, Any]:
        with self._lock:
            return {"payloads": list(self._payloads), "snapshot": self._snapshot}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._payloads = state["payloads"]
        self._snapshot = state["snapshot"]
        self._lock = threading.Lock()
