"""The pure fold from records to an in-memory state. No I/O except through what it is given."""

from optuna_journal.replay.apply import Reason, Rejected, Verdict, apply
from optuna_journal.replay.state import State

__all__ = ["Reason", "Rejected", "State", "Verdict", "apply"]
