from __future__ import annotations

import pickle

import pytest

from optuna_journal.backends import Backend, MemoryBackend
from tests.backends.contract import BackendContract, _all


class TestMemoryBackend(BackendContract):
    @pytest.fixture
    def backend(self) -> Backend:
        return MemoryBackend()

    def reopen(self, backend: Backend) -> Backend:
        return backend


def test_memory_backend_pickles_its_records_by_value() -> None:
    backend = MemoryBackend()
    backend.append_head(b"h")
    backend.append([b"a"])
    assert _all(pickle.loads(pickle.dumps(backend)))[0] == [b"h", b"a"]
