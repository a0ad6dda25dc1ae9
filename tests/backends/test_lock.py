from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
import signal
import time

import pytest

from optuna_journal.backends.file import FileBackend, _on_network_filesystem
from optuna_journal.backends.flock import FlockLock
from optuna_journal.backends.lock import End, LeaseLock
from optuna_journal.errors import LockLostError, LockTimeoutError
from tests.workers import hold_lock

ctx = multiprocessing.get_context("spawn")


def _start_holder(tmp_path: Path, lease: float, seconds: float) -> multiprocessing.Process:
    ready = tmp_path / "ready"
    holder = ctx.Process(
        target=hold_lock, args=(str(tmp_path / "log.lock"), lease, seconds, str(ready))
    )
    holder.start()
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert holder.is_alive() and time.monotonic() < deadline, "the holder never took the lock"
        time.sleep(0.01)
    return holder


def _entries(lock_dir: Path) -> list[str]:
    return os.listdir(lock_dir)


@pytest.mark.parametrize("reaped", [True, False])
def test_lock_of_a_sigkilled_holder_of_this_machine_is_taken_over_at_once(
    tmp_path: Path, reaped: bool
) -> None:
    holder = _start_holder(tmp_path, lease=600, seconds=600)
    os.kill(holder.pid, signal.SIGKILL)
    if reaped:
        holder.join()
    else:  # a zombie until its parent waits for it: as dead to its locks
        while Path(f"/proc/{holder.pid}/stat").read_text().split(")")[-1].split()[0] != "Z":
            time.sleep(0.01)
    lock = LeaseLock(str(tmp_path / "log.lock"), lease=600, timeout=30)
    [dead] = _entries(tmp_path / "log.lock")  # the dead holder's entry is still there
    assert dead.startswith("held+") and f"+{holder.pid}+" in dead
    with lock.hold():  # within the 30 s timeout, not after the 600 s lease
        [entry] = _entries(tmp_path / "log.lock")
        assert entry.startswith("held+") and f"+{os.getpid()}+" in entry
    holder.join()
    [entry] = _entries(tmp_path / "log.lock")
    assert entry.startswith("free+")
    assert sorted(os.listdir(tmp_path)) == ["log.lock", "ready"]  # nothing left aside


def test_lock_of_a_dead_holder_of_another_machine_is_taken_over_after_the_lease(
    tmp_path: Path,
) -> None:
    holder = _start_holder(tmp_path, lease=0.5, seconds=600)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    [dead] = _entries(tmp_path / "log.lock")
    host = dead.rsplit("+", 1)[1]
    assert "@" in host  # this machine's name @ its boot and pid namespace
    # The same entry as another machine (or container) with the same host name writes it:
    # its pid says nothing here.
    elsewhere = dead.replace(host, host.split("@")[0] + "@000000000000")
    os.rename(tmp_path / "log.lock" / dead, tmp_path / "log.lock" / elsewhere)
    lock = LeaseLock(str(tmp_path / "log.lock"), lease=0.5, timeout=30)
    started = time.monotonic()
    with lock.hold():
        waited = time.monotonic() - started
    assert waited >= 0.5  # not before the lease ran out: the holder might have been alive


def test_lock_of_a_live_refreshing_holder_is_never_taken_over(tmp_path: Path) -> None:
    holder = _start_holder(tmp_path, lease=0.3, seconds=3.0)
    lock = LeaseLock(str(tmp_path / "log.lock"), lease=0.3, timeout=1.5)
    with pytest.raises(LockTimeoutError, match=f"pid {holder.pid}"):
        with lock.hold():
            pass
    holder.join()
    assert holder.exitcode == 0
    with lock.hold():  # released by its holder: free at once
        pass


def test_lock_holder_that_lost_its_lock_refuses_to_write(tmp_path: Path) -> None:
    lock = LeaseLock(str(tmp_path / "log.lock"), lease=5)
    other = "held+-+-+5.0+1+0+someone+else"
    with lock.hold():
        lock.verify()
        [mine] = _entries(tmp_path / "log.lock")
        os.rename(tmp_path / "log.lock" / mine, tmp_path / "log.lock" / other)  # taken over
        with pytest.raises(LockLostError, match="taken over"):
            lock.verify()
    assert _entries(tmp_path / "log.lock") == [other]  # not ours: left alone


def test_lock_holder_that_lost_its_lock_refuses_to_write_where_stat_answers_from_a_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client that answers every stat from its cache, fresh attributes asked for or not,
    # as sshfs's dir_cache does: the holder's entry "exists" after it was renamed away.
    import optuna_journal.backends.lock as lock_module

    lock = LeaseLock(str(tmp_path / "log.lock"), lease=5)
    with lock.hold():
        [mine] = _entries(tmp_path / "log.lock")
        cached = os.stat(tmp_path / "log.lock" / mine)
        monkeypatch.setattr(lock_module, "fresh_stat", lambda target: cached)
        os.rename(tmp_path / "log.lock" / mine, tmp_path / "log.lock" / "held+-+-+5.0+1+0+x+y")
        with pytest.raises(LockLostError, match="taken over"):
            lock.verify()
        monkeypatch.undo()


def test_lock_carries_the_end_each_holder_leaves_to_the_next(tmp_path: Path) -> None:
    path = str(tmp_path / "log.lock")
    with LeaseLock(path).hold() as handoff:
        assert handoff.found is None  # a new lock knows no end
        handoff.leave = End(1234, 0xDEADBEEF)
    with LeaseLock(path).hold() as handoff:
        assert handoff.found == End(1234, 0xDEADBEEF)
    with LeaseLock(path).hold() as handoff:
        assert handoff.found == End(1234, 0xDEADBEEF)  # not changed: passed on as it was
        handoff.leave = End(2000, 7)
        [entry] = _entries(tmp_path / "log.lock")
        os.rename(tmp_path / "log.lock" / entry, tmp_path / "log.lock" / "elsewhere")
    # A holder that died: its successor takes over the end it had found.
    dead = "held+2000+00000007+0.3+1+0+x+deadhost"
    os.rename(tmp_path / "log.lock" / "elsewhere", tmp_path / "log.lock" / dead)
    with LeaseLock(path, lease=0.3).hold() as handoff:
        assert handoff.found == End(2000, 7)


def test_lock_directory_in_a_strange_state_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file.lock").write_text("an older version's lock file")
    with pytest.raises(NotADirectoryError, match="older version"):
        with LeaseLock(str(tmp_path / "file.lock")).hold():
            pass
    (tmp_path / "two.lock").mkdir()
    (tmp_path / "two.lock" / "free+-+-+1").mkdir()
    (tmp_path / "two.lock" / "free+-+-+2").mkdir()
    with pytest.raises(LockTimeoutError, match="where it should hold one entry"):
        with LeaseLock(str(tmp_path / "two.lock"), timeout=0.5).hold():
            pass


def test_lock_rejects_nonsense_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lease"):
        LeaseLock(str(tmp_path / "l"), lease=0)


def test_flock_of_a_sigkilled_holder_is_free_at_once(tmp_path: Path) -> None:
    holder = _start_holder(tmp_path, lease=0, seconds=600)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    with FlockLock(str(tmp_path / "log.lock"), timeout=5).hold():  # no lease to wait out
        pass


def test_flock_of_a_live_holder_times_out(tmp_path: Path) -> None:
    holder = _start_holder(tmp_path, lease=0, seconds=3.0)
    with pytest.raises(LockTimeoutError, match="another process"):
        with FlockLock(str(tmp_path / "log.lock"), timeout=1.0).hold():
            pass
    holder.join()
    with FlockLock(str(tmp_path / "log.lock"), timeout=5).hold():
        pass


def test_lock_kind_follows_the_filesystem(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 0:21 / / rw - ext4 /dev/vda rw\n"
        "30 22 0:40 / /shared rw - nfs4 server:/export rw\n"
        "31 22 0:41 / /shared/local\\040dir rw - xfs /dev/vdb rw\n"
    )
    assert not _on_network_filesystem("/home", str(mountinfo))
    assert _on_network_filesystem("/shared/studies", str(mountinfo))
    assert not _on_network_filesystem("/shared/local dir/x", str(mountinfo))
    assert _on_network_filesystem("/tmp", str(tmp_path / "no-such-file"))
    assert isinstance(FileBackend(tmp_path / "s.journal").lock, FlockLock)  # a local disk
    assert isinstance(FileBackend(tmp_path / "s.journal", "lease").lock, LeaseLock)
    with pytest.raises(ValueError, match="lock must be"):
        FileBackend(tmp_path / "s.journal", "fcntl")
