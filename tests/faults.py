"""Drivers of the fault tests that run on a local directory and on the network-FS testbed."""

from __future__ import annotations

from collections.abc import Sequence
import multiprocessing
import os
from pathlib import Path
import signal
import time

import optuna

from optuna_journal import FileBackend, JournalStorage
from optuna_journal.verify import verify
from tests.workers import freeze_while_holding, write_until_killed

ctx = multiprocessing.get_context("spawn")


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def _holder_pid(lock: Path) -> int | None:
    """The pid holding the lease lock; None if free or caught mid-rename."""
    entries = os.listdir(lock)
    fields = entries[0].split("+") if len(entries) == 1 else []
    return int(fields[4]) if fields[:1] == ["held"] else None


def until(what: str, done: object, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"waited {seconds:.0f} s for {what}"
        time.sleep(0.01)


def frozen_holder(frozen: Path, others: Sequence[Path], lease: float, tmp: Path) -> dict[str, int]:
    """Freeze a lease-lock holder (it SIGSTOPs itself at its last check before writing) while
    the writers ``others`` take the lock over and append, then SIGCONT it: twice, in an
    append and in a snapshot. Assert it wrote nothing after losing the lock and that nothing
    acknowledged is lost; return the counts.

    ``frozen`` and ``others`` are paths of one journal (through one or two clients).
    """
    storage = JournalStorage(FileBackend(frozen, "lease", lock_lease=lease))
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "crash")
    acks, lost, done = tmp / "acks", tmp / "lost", tmp / "done"
    holder = ctx.Process(
        target=freeze_while_holding, args=(str(frozen), lease, str(acks), str(lost), str(done))
    )
    writers = [
        ctx.Process(target=write_until_killed, args=(str(p), str(acks), "lease", lease))
        for p in others
    ]
    lock = Path(f"{frozen}.lock")
    holder.start()
    freezes = 0
    try:
        for w in writers:
            w.start()
        for freezes in (1, 2):  # noqa: B007 (returned)
            until("the holder to freeze itself", lambda: _stopped(holder.pid) or done.exists())
            before = len(lines(acks))
            # The others wait out the lease, take the lock over and append.
            until("a takeover", lambda: _holder_pid(lock) not in (holder.pid, None))
            until("appends after the takeover", lambda: len(lines(acks)) >= before + 5)  # noqa: B023
            os.kill(holder.pid, signal.SIGCONT)
        holder.join(timeout=120)
        assert holder.exitcode == 0 and done.exists()
    finally:
        for p in (holder, *writers):
            if p.is_alive():
                os.kill(p.pid, signal.SIGCONT)  # type: ignore[arg-type]
                p.kill()
            p.join()

    # A writer killed while snapshotting left a scratch file and the lock held: the next
    # writer takes the lock over at once (its holder's process is gone) and removes it.
    JournalStorage(FileBackend(others[0], "lease", lock_lease=lease)).set_study_user_attr(
        study_id, "after", 1
    )
    assert not any(os.path.exists(p) for p in FileBackend(frozen).scratch_paths)

    refused = lines(lost)
    assert refused[1:] == ["snapshot"] and len(refused) == 2, refused
    attrs = JournalStorage(FileBackend(frozen), snapshot_every=0).get_study_user_attrs(study_id)
    assert refused[0] not in attrs  # refused by the lock check: never written
    acknowledged = lines(acks)
    assert set(acknowledged) <= set(attrs)
    assert len(acknowledged) == len(set(acknowledged))
    # The snapshot now beside the log, whoever wrote it, gives the same answer as the log.
    from_snapshot = JournalStorage(FileBackend(frozen)).get_study_user_attrs(study_id)
    assert from_snapshot == attrs
    report = verify(str(frozen))
    assert report.sound, report.lines()
    return {"freezes": freezes, "refused": len(refused), "acknowledged": len(acknowledged)}
