"""A two-client network filesystem on this machine: one directory served by a throwaway
``sshd`` on 127.0.0.1 and mounted twice with ``sshfs``.

Each mount is a FUSE client with its own SSH connection and its own attribute, directory-entry
and page caches, so the two see one file as two NFS clients do: through caches that may be
stale for seconds, with ``O_APPEND``, ``flock`` and ``fcntl`` locks local to each client, and
an unlink of a file still open on a client turned into a hidden rename. No kernel NFS client
can be mounted here (no modules load); FUSE can.

The daemon has its own host key, client key, config and port; nothing of the system's ssh
setup is read or touched.
"""

from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path
import shutil
import socket
import subprocess
import time

PROFILES: dict[str, str] = {
    # Every read and stat goes to the server.
    "nocache": "dir_cache=no,attr_timeout=0,entry_timeout=0,negative_timeout=0,direct_io",
    # Close to the Linux NFS client's defaults: attributes and names cached for seconds, the
    # page cache kept while a file's mtime and size look unchanged.
    "nfslike": (
        "dir_cache=no,auto_cache,ac_attr_timeout=0,attr_timeout=3,entry_timeout=3,"
        "negative_timeout=0"
    ),
    # And sshfs's own cache of directory listings and attributes on top.
    "dircache": (
        "dir_cache=yes,dcache_timeout=3,auto_cache,ac_attr_timeout=0,attr_timeout=3,"
        "entry_timeout=3,negative_timeout=0"
    ),
}

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


def unavailable() -> str | None:
    """Why this machine cannot mount a FUSE filesystem, or ``None`` if it can."""
    if not os.path.exists("/dev/fuse") or not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "FUSE is not available (/dev/fuse missing or not accessible)"
    return None


def missing_tools() -> str | None:
    """The package to install for the testbed, or ``None`` if nothing is missing."""
    for tool, package in (
        ("sshfs", "sshfs"),
        ("fusermount3", "fuse3"),
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
    ):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package {package})"
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is not installed (Debian package openssh-server)"
    return None


@dataclass
class NetFS:
    """The export (the server's own directory) and its two mounts."""

    export: Path
    a: Path
    b: Path
    profile: str


class Testbed:
    """Start with :meth:`start`, end with :meth:`stop` (unmounts and stops the daemon).

    Args:
        root: A fresh directory for the keys, the config, the export and the mount points.
        profile: A key of :data:`PROFILES`: the cache options of both mounts.
    """

    def __init__(self, root: Path, profile: str) -> None:
        self.root = root
        self.profile = profile
        self.sshd: subprocess.Popen[bytes] | None = None
        self.mounted: list[Path] = []

    def start(self) -> NetFS:
        keys = self.root / "keys"
        keys.mkdir(mode=0o700)
        for name in ("host", "client"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)],
                check=True,
            )
        (keys / "authorized_keys").write_bytes((keys / "client.pub").read_bytes())
        host_key = (keys / "host.pub").read_text().split()
        export = self.root / "export"
        export.mkdir()
        port = _free_port()
        (keys / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
        config = keys / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    "ListenAddress 127.0.0.1",
                    f"Port {port}",
                    f"HostKey {keys / 'host'}",
                    f"AuthorizedKeysFile {keys / 'authorized_keys'}",
                    f"PidFile {keys / 'sshd.pid'}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",
                    f"Subsystem sftp {SFTP_SERVER}",
                    "LogLevel ERROR",
                ]
            )
            + "\n"
        )
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
        self.sshd = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "sshd.log", "wb"),  # noqa: SIM115 (the daemon holds it)
        )
        _wait_for_port(port, self.sshd, self.root / "sshd.log")
        ssh_options = (
            f"port={port},IdentityFile={keys / 'client'},"
            f"UserKnownHostsFile={keys / 'known_hosts'},GlobalKnownHostsFile=/dev/null,"
            "StrictHostKeyChecking=yes,BatchMode=yes,IdentitiesOnly=yes"
        )
        user = os.environ.get("USER") or _user()
        mounts = []
        for name in ("a", "b"):
            point = self.root / name
            point.mkdir()
            subprocess.run(
                [
                    "sshfs",
                    f"{user}@127.0.0.1:{export}",
                    str(point),
                    "-F",
                    "/dev/null",  # no ssh_config of the system's or the user's
                    "-o",
                    f"{ssh_options},no_contain_symlinks,{PROFILES[self.profile]}",
                ],
                check=True,
                timeout=30,
            )
            self.mounted.append(point)
            mounts.append(point)
        return NetFS(export, mounts[0], mounts[1], self.profile)

    def stop(self) -> None:
        for point in self.mounted:
            subprocess.run(["fusermount3", "-u", "-z", str(point)], check=False)
        self.mounted = []
        if self.sshd is not None:
            self.sshd.terminate()
            self.sshd.wait(10)
            self.sshd = None


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port} within 10 s")
