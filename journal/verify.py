"""``optuna-journal verify``: is a log sound, and if not, where does it go wrong?"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
import os
from typing import Any

from optuna_journal import log, open_backend
from optuna_journal.backends.file import FileBackend
from optuna_journal.errors import JournalError
from optuna_journal.replay import snapshot


@dataclass
class Report:
    """What ``verify`` found. The log is sound when there are no problems."""

    location: str
    records: int = 0
    schema_version: int | None = None
    snapshot: str = "none"
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def sound(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sound": self.sound}

    def lines(self) -> list[str]:
        verdict = "sound" if self.sound else "NOT SOUND"
        out = [
            f"{self.location}: {verdict}",
            f"  records:  {self.records} (the header included)",
            f"  schema:   {self.schema_version}",
            f"  snapshot: {self.snapshot}",
        ]
        out += [f"  problem:  {p}" for p in self.problems]
        out += [f"  note:     {n}" for n in self.notes]
        return out


def verify(location: str) -> Report:
    """Check every frame, every record against the schema, and the snapshot."""
    backend = open_backend(location)
    report = Report(backend.location)

    if isinstance(backend, FileBackend):
        found = backend.inspect()
        if found.error is not None:
            report.problems.append(
                f"corrupt frame at byte offset {found.end} (record {found.records}): {found.error}"
            )
        elif found.torn:
            report.problems.append(
                f"torn tail: {found.torn} bytes at byte offset {found.end}, after record "
                f"{found.records - 1} (a writer died mid-append, or a power loss took appends "
                "before their sync); `optuna-journal repair` cuts it, and so does the next append"
            )
        for temp, what in zip(backend.scratch_paths, ("snapshot", "compaction"), strict=True):
            if os.path.exists(temp):
                report.notes.append(
                    f"{temp}: an unfinished {what} (a writer died making it): unused, and "
                    f"replaced by the next {what}"
                )

    try:
        for number, record in log.records(backend, progress=True):
            report.records = number + 1
            if number == 0:
                report.schema_version = record.schema_version  # type: ignore[union-attr]
    except JournalError as err:
        if not report.problems:
            report.problems.append(str(err))

    data = backend.load_snapshot()
    if data is not None:
        try:
            _, cursor, _ = snapshot.load(data, backend)
            report.snapshot = f"sound, at record {cursor.records}"
        except snapshot.SnapshotError as err:
            report.snapshot = f"unusable: {err}"
            report.problems.append(
                f"the snapshot is unusable ({err}); readers replay the whole log. "
                "`optuna-journal snapshot` replaces it"
            )
    return report
