"""Optuna's own conformance kit for storages, run against every backend."""

from __future__ import annotations

from pathlib import Path

from optuna.testing.pytest_storages import StorageTestCase
import pytest

from optuna_journal import FileBackend, JournalStorage, MemoryBackend


class TestMemoryBackendConformance(StorageTestCase):
    @pytest.fixture
    def storage(self) -> JournalStorage:
        return JournalStorage(MemoryBackend())


class TestFileBackendConformance(StorageTestCase):
    @pytest.fixture
    def storage(self, tmp_path: Path) -> JournalStorage:
        return JournalStorage(FileBackend(tmp_path / "study.journal"))
