"""Soak mode: with ``OPTUNA_JOURNAL_SOAK=1`` the tests marked slow run their long versions."""

from __future__ import annotations

import os
from typing import TypeVar

import pytest

T = TypeVar("T")

SOAK = os.environ.get("OPTUNA_JOURNAL_SOAK") == "1"


def slow(test: T) -> T:
    """Mark a test that has a long soak version, and give that version the time it needs."""
    marked: T = pytest.mark.slow(pytest.mark.timeout(1800)(test) if SOAK else test)
    return marked
