"""The contract every backend keeps; each backend's test is a one-line subclass."""

from __future__ import annotations

import threading

import pytest

from optuna_journal.backends import Backend, Cursor


def _all(backend: Backend, after: Cursor | None = None) -> tuple[list[bytes], Cursor | None]:
    payloads: list[bytes] = []
    cursor = after
    for batch in backend.read(after):
        payloads += batch.payloads
        cursor = batch.cursor
    return payloads, cursor


class BackendContract:
    @pytest.fixture
    def backend(self) -> Backend:
        raise NotImplementedError

    def reopen(self, backend: Backend) -> Backend:
        """A second handle on the same log, as another process would have."""
        raise NotImplementedError

    def test_backend_empty_log_reads_nothing(self, backend: Backend) -> None:
        assert _all(backend) == ([], None)

    def test_backend_read_after_an_append_brings_others_records_before_it(
        self, backend: Backend
    ) -> None:
        """The read that follows an append (served from the append itself where a backend
        can) yields what others appended in between, then ours, then nothing more."""
        backend.append_head(b"head")
        _, cursor = _all(backend)
        other = self.reopen(backend)
        other.append([b"theirs"])
        backend.append([b"mine", b"mine too"], after=cursor)
        payloads, after = _all(backend, cursor)
        assert payloads == [b"theirs", b"mine", b"mine too"]
        assert after is not None and after.records == 4
        assert _all(backend, after) == ([], after)
        other.append([b"later"])
        assert _all(backend, after)[0] == [b"later"]
        assert _all(self.reopen(backend))[0] == [
            b"head",
            b"theirs",
            b"mine",
            b"mine too",
            b"later",
        ]

    def test_backend_reads_appends_in_order_with_counts(self, backend: Backend) -> None:
        backend.append_head(b"head")
        backend.append([b"a", b"bb"])
        backend.append([b""])
        payloads, cursor = _all(backend)
        assert payloads == [b"head", b"a", b"bb", b""]
        assert cursor is not None and cursor.records == 4

    def test_backend_reads_only_after_the_cursor(self, backend: Backend) -> None:
        backend.append_head(b"head")
        backend.append([b"a"])
        _, cursor = _all(backend)
        backend.append([b"b", b"c"])
        payloads, after = _all(backend, cursor)
        assert payloads == [b"b", b"c"]
        assert after is not None and after.records == 4
        assert _all(backend, after) == ([], after)

    def test_backend_reads_from_the_start_meanwhile_move_no_reader(self, backend: Backend) -> None:
        """Views and history read through the storage's own handle, from the start."""
        backend.append_head(b"head")
        backend.append([b"a"])
        _, cursor = _all(backend)
        backend.append([b"b"], after=cursor)
        assert _all(backend)[0] == [b"head", b"a", b"b"]
        payloads, after = _all(backend, cursor)
        assert payloads == [b"b"]
        backend.append([b"c"], after=after)
        assert _all(backend, after)[0] == [b"c"]

    def test_backend_locates_a_cursor_kept_in_a_snapshot(self, backend: Backend) -> None:
        backend.append_head(b"head")
        backend.append([b"a"])
        _, cursor = _all(backend)
        assert cursor is not None
        backend.append([b"b"])
        kept = Cursor(cursor.records, cursor.token)  # what a snapshot keeps of it
        located = self.reopen(backend).locate(kept)
        assert located is not None and located[:2] == kept[:2]
        assert _all(backend, located)[0] == [b"b"]

    def test_backend_head_is_written_once(self, backend: Backend) -> None:
        other = self.reopen(backend)
        backend.append_head(b"first")
        other.append_head(b"second")
        backend.append([b"x"])
        backend.append_head(b"third")
        assert _all(other)[0] == [b"first", b"x"]

    def test_backend_other_handles_see_the_same_log(self, backend: Backend) -> None:
        other = self.reopen(backend)
        backend.append_head(b"h")
        other.append([b"from other"])
        backend.append([b"from first"])
        assert _all(backend)[0] == _all(other)[0] == [b"h", b"from other", b"from first"]

    def test_backend_concurrent_appends_lose_nothing(self, backend: Backend) -> None:
        backend.append_head(b"h")

        def write(n: int) -> None:
            mine = self.reopen(backend)
            for i in range(25):
                mine.append([f"{n}:{i}".encode()])

        threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        payloads = _all(backend)[0][1:]
        assert sorted(payloads) == sorted(f"{n}:{i}".encode() for n in range(4) for i in range(25))
        for n in range(4):  # each writer's records stay in its own order
            mine = [p for p in payloads if p.startswith(f"{n}:".encode())]
            assert mine == [f"{n}:{i}".encode() for i in range(25)]
