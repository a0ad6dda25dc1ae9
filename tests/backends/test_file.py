from __future__ import annotations

from collections.abc import Callable
import os
from pathlib import Path
import pickle
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import zlib

import pytest

from optuna_journal.backends import Backend, FileBackend, frames
from optuna_journal.errors import (
    CorruptLogError,
    LogReplacedError,
    LogTruncatedError,
    NotAJournalError,
    StaleViewError,
)
from tests import logs
from tests.backends.contract import BackendContract, _all


class TestFileBackend(BackendContract):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Backend:
        return FileBackend(tmp_path / "log.journal")

    def reopen(self, backend: Backend) -> Backend:
        return FileBackend(backend.location)


def _log(tmp_path: Path, payloads: list[bytes]) -> tuple[FileBackend, list[int]]:
    """A log holding ``payloads``, and the byte offset where each frame starts."""
    backend = FileBackend(tmp_path / "log.journal")
    backend.append_head(payloads[0])
    for payload in payloads[1:]:  # one append each: the marks of later ones vouch for it
        backend.append([payload])
    starts = [s.start for s in logs.records(Path(backend.location).read_bytes())]
    assert len(starts) == len(payloads)
    return backend, starts


PAYLOADS = [b"head", b"first", b"x" * 300, b"third", b"fourth!"]


def test_file_every_cut_in_the_last_three_frames_reads_the_frames_before_it(
    tmp_path: Path,
) -> None:
    backend, starts = _log(tmp_path, PAYLOADS)
    whole = Path(backend.location).read_bytes()
    for cut in range(starts[-3], len(whole)):
        Path(backend.location).write_bytes(whole[:cut])
        complete = sum(1 for s, p in zip(starts, PAYLOADS, strict=False) if s + 12 + len(p) <= cut)
        assert _all(FileBackend(backend.location))[0] == PAYLOADS[:complete], cut


def test_file_cut_below_what_a_process_has_read_stops_its_reads_and_appends(
    tmp_path: Path,
) -> None:
    backend, starts = _log(tmp_path, PAYLOADS)
    _, cursor = _all(backend)
    os.truncate(backend.location, starts[3])  # as repair --force, or an older copy put back
    with pytest.raises(LogTruncatedError, match=f"{starts[3]} bytes, shorter than"):
        _all(backend, cursor)
    with pytest.raises(LogTruncatedError):
        backend.append([b"new"])
    assert os.path.getsize(backend.location) == starts[3]
    assert _all(FileBackend(backend.location))[0] == PAYLOADS[:3]


def test_file_replaced_under_a_reader_stops_its_reads_and_appends_at_its_old_offsets(
    tmp_path: Path,
) -> None:
    backend, _ = _log(tmp_path, PAYLOADS)
    _, cursor = _all(backend)
    other = tmp_path / "other"
    other.mkdir()
    _log(other, [b"another head", b"one"])
    os.replace(other / "log.journal", backend.location)  # as compact does
    before = Path(backend.location).read_bytes()
    with pytest.raises(LogReplacedError, match="nothing was appended"):
        backend.append([b"new"], after=cursor)
    assert Path(backend.location).read_bytes() == before
    with pytest.raises(LogReplacedError):
        _all(backend, cursor)
    payloads, anew = _all(backend)
    assert payloads == [b"another head", b"one"]
    backend.append([b"new"], after=anew)
    assert _all(backend, anew)[0] == [b"new"]


def test_file_torn_tail_is_overwritten_by_the_next_writer(tmp_path: Path) -> None:
    backend, starts = _log(tmp_path, PAYLOADS)
    with open(backend.location, "r+b") as f:
        f.truncate(starts[-1] + 5)  # the last frame is cut mid-header
    writer = FileBackend(backend.location)
    writer.append([b"after the crash"])
    assert _all(FileBackend(backend.location))[0] == PAYLOADS[:-1] + [b"after the crash"]


def test_file_zero_filled_tail_is_torn_not_corrupt(tmp_path: Path) -> None:
    backend, _ = _log(tmp_path, PAYLOADS)
    with open(backend.location, "ab") as f:
        f.write(bytes(4096))  # what a crash can leave where the filesystem had extended the file
    assert _all(FileBackend(backend.location))[0] == PAYLOADS
    FileBackend(backend.location).append([b"next"])
    assert _all(FileBackend(backend.location))[0] == PAYLOADS + [b"next"]


@pytest.mark.parametrize("where", ["header", "payload"])
def test_file_corruption_in_the_middle_names_path_offset_and_record(
    tmp_path: Path, where: str
) -> None:
    backend, starts = _log(tmp_path, PAYLOADS)
    data = bytearray(Path(backend.location).read_bytes())
    data[starts[2] + (1 if where == "header" else 20)] ^= 0x40
    Path(backend.location).write_bytes(bytes(data))
    with pytest.raises(CorruptLogError) as info:
        _all(FileBackend(backend.location))
    err = info.value
    assert (err.location, err.offset, err.record) == (backend.location, starts[2], 2)
    assert f"byte offset {starts[2]} (record 2)" in str(err) and backend.location in str(err)
    # A writer refuses to append to a corrupt log, and leaves it as it was.
    with pytest.raises(CorruptLogError):
        FileBackend(backend.location).append([b"more"])
    assert Path(backend.location).read_bytes() == bytes(data)


def test_file_that_is_not_a_journal_is_refused_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "optuna.log"
    content = b'{"op_code": 0, "worker_id": "w", "study_name": "s", "directions": [1]}\n'
    path.write_bytes(content)
    with pytest.raises(NotAJournalError, match="Optuna's own JSON journal"):
        FileBackend(path)
    assert path.read_bytes() == content


def test_file_in_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FileBackend(tmp_path / "nowhere" / "log.journal")


def _error_of(action: Callable[[], object]) -> str:
    try:
        action()
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return "no error"


def _in_forked_child(check: Callable[[], str]) -> str:
    """Run ``check`` in a forked child (no exec: nothing to find on PATH) and return its text."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, check().encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        message = f.read().decode()
    os.waitpid(pid, 0)
    return message


def _unprivileged_error_of(action: Callable[[], object]) -> str:
    """What ``action`` raises, run without root's power to ignore permissions (as the user
    nobody, if this is root)."""
    if os.geteuid() != 0:
        return _error_of(action)

    def check() -> str:
        os.setgid(65534)
        os.setuid(65534)
        return _error_of(action)

    return _in_forked_child(check)


def test_file_without_write_permission_is_a_clear_error() -> None:
    with tempfile.TemporaryDirectory() as parent:
        os.chmod(parent, 0o755)  # traversable by the unprivileged child
        directory = os.path.join(parent, "ro")
        os.mkdir(directory, 0o555)
        path = os.path.join(directory, "log.journal")
        message = _unprivileged_error_of(lambda: FileBackend(path).append_head(b"h"))
    assert message.startswith("PermissionError") and "no permission" in message, message
    assert "log.journal" in message, message


def test_file_snapshot_without_write_permission_is_a_clear_error() -> None:
    with tempfile.TemporaryDirectory() as parent:
        os.chmod(parent, 0o755)
        path = os.path.join(parent, "log.journal")
        FileBackend(path).append_head(b"h")
        os.chmod(path, 0o644)
        os.chmod(parent, 0o555)  # readable, not writable: no snapshot can be made beside it
        message = _unprivileged_error_of(lambda: FileBackend(path).save_snapshot(b"s"))
        os.chmod(parent, 0o755)
        assert not [name for name in os.listdir(parent) if ".snapshot" in name]
    assert message.startswith("PermissionError") and "no permission to write a snapshot" in message
    assert "log.journal.snapshot" in message and "directory" in message, message


def test_file_backend_pickles_as_its_location(tmp_path: Path) -> None:
    backend, _ = _log(tmp_path, [b"h"] + [b"p" * 1000] * 10)
    blob = pickle.dumps(backend)
    assert len(blob) < 300 and b"p" * 100 not in blob
    assert _all(pickle.loads(blob))[0] == _all(backend)[0]


def _append_beyond_the_file_size_limit(path: str, payload: bytes) -> str:
    """Cap file sizes (a full disk, as the writer sees it), then append."""

    def check() -> str:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        limit = os.path.getsize(path) + 100
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        return _error_of(lambda: FileBackend(path).append([payload]))

    return _in_forked_child(check)


def test_file_full_disk_is_a_clear_error_and_leaves_the_log_as_it_was(tmp_path: Path) -> None:
    backend, _ = _log(tmp_path, PAYLOADS)
    before = Path(backend.location).read_bytes()
    message = _append_beyond_the_file_size_limit(backend.location, b"z" * 10_000)
    assert "could not append" in message and f"byte offset {len(before)}" in message, message
    assert "nothing was appended" in message and backend.location in message
    assert Path(backend.location).read_bytes() == before
    assert not os.path.exists(backend.location + ".lock")
    backend.append([b"later"])
    assert _all(FileBackend(backend.location))[0] == PAYLOADS + [b"later"]


def test_file_backend_alive_at_exit_closes_quietly_after_os_is_torn_down(tmp_path: Path) -> None:
    """A backend that outlives the os module at interpreter exit (here, because __main__ put
    a function of its own into os) still closes its descriptors, and prints nothing."""
    script = (
        "import os\n"
        "from optuna_journal.backends import FileBackend\n"
        f"backend = FileBackend({str(tmp_path / 's.journal')!r}, lock='flock')\n"
        "backend.append([b'x'])\n"
        "list(backend.read())\n"
        "os.fsync = lambda fd: None  # a function of __main__ in os: its globals outlive os\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0 and run.stderr == "", run.stderr


def _leave_in_lock(path: Path, entry: str) -> None:
    """Set the lock's one entry (the state the last holder left) to ``entry``."""
    lock = Path(f"{path}.lock")
    [name] = os.listdir(lock)
    os.rename(lock / name, lock / entry)


def test_file_append_waits_for_its_view_of_the_log_to_reach_the_end_left_in_the_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.journal"
    backend = FileBackend(path, "lease", lock_timeout=1.0)
    backend.append_head(b"h")
    backend.append([b"a" * 100])
    before = path.read_bytes()
    # The last holder left a longer log than this host sees (its cache lags, as on NFS) ...
    _leave_in_lock(path, f"free+{len(before) + 50}+{zlib.crc32(b'x' * 32):08x}+n")
    with pytest.raises(StaleViewError, match=f"byte {len(before)}, .* byte {len(before) + 50}"):
        backend.append([b"b"])
    # ... or the same length with other last bytes: either way nothing is written.
    _leave_in_lock(path, f"free+{len(before)}+{zlib.crc32(b'x' * 32):08x}+n")
    with pytest.raises(StaleViewError, match="other last bytes"):
        backend.append([b"b"])
    assert path.read_bytes() == before
    # A view that catches up while the writer waits: it writes after what it then sees.
    late = frames.pack(b"late")
    _leave_in_lock(path, f"free+{len(before + late)}+{zlib.crc32((before + late)[-32:]):08x}+n")
    catching_up = threading.Timer(0.3, lambda: path.write_bytes(before + late))
    catching_up.start()
    FileBackend(path, "lease", lock_timeout=30).append([b"c"])
    catching_up.join()
    assert _all(FileBackend(path))[0] == [b"h", b"a" * 100, b"late", b"c"]


def test_file_takeover_removes_what_the_dead_holder_left_half_made(tmp_path: Path) -> None:
    path = tmp_path / "s.journal"
    backend = FileBackend(path, "lease", lock_lease=0.3)
    backend.append_head(b"h")
    _leave_in_lock(path, "held+-+-+0.3+1+0+n+deadhost")  # killed holding the lock ...
    for scratch in backend.scratch_paths:  # ... while writing a snapshot, or compacting
        Path(scratch).write_bytes(b"half")
    backend.append([b"x"])
    assert sorted(os.listdir(tmp_path)) == ["s.journal", "s.journal.lock"]
    assert _all(backend)[0] == [b"h", b"x"]


def test_file_never_overwrites_what_looks_torn_before_the_end_left_in_the_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.journal"
    backend = FileBackend(path, "lease", lock_timeout=1.0)
    backend.append_head(b"h")
    # Bytes that end like an incomplete frame to this host, while the last holder left the
    # log longer, ending right there: what a stale page in the middle would look like.
    frame = frames.pack(b"f" * 100)
    with open(path, "ab") as f:
        f.write(frame[:60])
    data = path.read_bytes()
    _leave_in_lock(path, f"free+{len(data)}+{zlib.crc32(data[-32:]):08x}+n")
    with pytest.raises(StaleViewError, match="overwrite frames this host has not seen whole"):
        backend.append([b"x"])
    assert path.read_bytes() == data


class _StaleClient:
    """``os`` as a network client with a stale first page shows it to the backend: reads of
    that page return what the client cached (the file as it was, zeros past its old end)
    until an ``fadvise(DONTNEED)`` drops it. As Linux does, the advice drops only whole pages
    from its offset rounded up, and a page busy at the time (``busy``) stays."""

    PAGE = 4096

    def __init__(self, cached: bytes, busy: int) -> None:
        self.page: bytes | None = cached[: self.PAGE].ljust(self.PAGE, b"\0")
        self.busy = busy

    def __getattr__(self, name: str) -> object:
        return getattr(os, name)

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        data = os.pread(fd, n, offset)
        if self.page is None or offset >= self.PAGE:
            return data
        stale = self.page[offset : offset + n]
        return (stale + data[len(stale) :])[: len(data)]

    def posix_fadvise(self, fd: int, offset: int, length: int, advice: int) -> None:
        if advice == os.POSIX_FADV_DONTNEED and offset == 0:
            if self.busy:
                self.busy -= 1
            else:
                self.page = None
        os.posix_fadvise(fd, offset, length, advice)


@pytest.mark.parametrize("busy", [0, 1], ids=["partial-page", "page-busy-once"])
def test_file_on_a_network_filesystem_reads_past_a_stale_cached_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, busy: int
) -> None:
    import optuna_journal.backends.file as file_module

    path = tmp_path / "s.journal"
    reader = FileBackend(path)
    reader.append_head(b"h")
    reader.append([b"a" * 100])
    cursor, cached = list(reader.read())[-1].cursor, path.read_bytes()
    FileBackend(path).append([b"b" * 100])  # another host writes after what this one cached
    reader._local = False  # as on NFS: the reader asks the server, and drops cached pages
    monkeypatch.setattr(file_module, "os", _StaleClient(cached, busy))
    assert [p for batch in reader.read(cursor) for p in batch.payloads] == [b"b" * 100]
