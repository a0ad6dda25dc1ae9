"""A file's size and mtime as the server has them now, past the client's attribute cache.

An NFS or FUSE client answers ``stat`` from attributes it cached for seconds (``actimeo``,
``attr_timeout``), and reads stop at the size it cached: a process that trusts them can miss
another host's appends. ``statx`` with ``AT_STATX_FORCE_SYNC`` makes the client ask the
server (Linux 4.11+: NFS and FUSE honour it), and a size that changed drops the client's
cached pages of the file, so the reads that follow return the server's bytes.

Where ``statx`` is missing (another OS, an old C library) this falls back to ``stat``. The
file backend never trusts this alone: under the lock it also checks what the previous holder
left (see :mod:`optuna_journal.backends.lock`).
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Any, NamedTuple

_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_AT_STATX_FORCE_SYNC = 0x2000
_STATX_MTIME = 0x40
_STATX_INO = 0x100
_STATX_SIZE = 0x200


class Fresh(NamedTuple):
    size: int
    mtime_ns: int
    identity: tuple[int, int]  # (device, inode), as os.stat gives them


def _statx_function() -> Any:
    try:
        function = ctypes.CDLL(None, use_errno=True).statx
    except (AttributeError, OSError):  # not Linux, or a C library older than glibc 2.28
        return None
    int_, uint, chars = ctypes.c_int, ctypes.c_uint, ctypes.c_char_p
    function.argtypes = (int_, chars, int_, uint, chars)
    function.restype = ctypes.c_int
    return function


_statx = _statx_function()


def fresh_stat(target: int | str) -> Fresh:
    """The size, mtime and identity of a file (an open descriptor, or a path) from its
    server.

    Raises:
        FileNotFoundError: ``target`` is a path that no longer exists on the server.
    """
    if _statx is not None:
        buf = ctypes.create_string_buffer(256)  # struct statx
        if isinstance(target, int):
            fd, path, flags = target, b"", _AT_EMPTY_PATH | _AT_STATX_FORCE_SYNC
        else:
            fd, path, flags = _AT_FDCWD, os.fsencode(target), _AT_STATX_FORCE_SYNC
        if _statx(fd, path, flags, _STATX_SIZE | _STATX_MTIME | _STATX_INO, buf) == 0:
            raw = buf.raw
            size = int.from_bytes(raw[40:48], "little")
            seconds = int.from_bytes(raw[112:120], "little", signed=True)
            nanoseconds = int.from_bytes(raw[120:124], "little")
            inode = int.from_bytes(raw[32:40], "little")
            device = os.makedev(
                int.from_bytes(raw[136:140], "little"), int.from_bytes(raw[140:144], "little")
            )
            return Fresh(size, seconds * 1_000_000_000 + nanoseconds, (device, inode))
        code = ctypes.get_errno()
        if code != errno.ENOSYS:  # a kernel without statx: stat is all there is
            name = None if isinstance(target, int) else target
            raise OSError(code, os.strerror(code), name)
    st = os.stat(target)
    return Fresh(st.st_size, st.st_mtime_ns, (st.st_dev, st.st_ino))
