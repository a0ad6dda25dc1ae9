"""Artifacts: an atomic, verified store for Optuna's ``optuna.artifacts``, and their trace
in the log.

:class:`JournalArtifactStore` satisfies Optuna's ``ArtifactStore`` protocol. An artifact's
bytes go to a temporary file in the store's directory, are fsynced, then renamed into place
under their id, and the directory is fsynced: a reader sees the whole artifact or none,
and a writer killed midway leaves only a ``.tmp-*`` file, under no id. Beside each artifact,
``ID.sha256`` holds its SHA-256 and size, written (the same way) before the artifact, and
every read checks the bytes against it.

Optuna's ``upload_artifact`` writes the bytes, then the metadata as the system attr
``artifacts:ID``; our storage turns that attr into an ``artifact.uploaded`` record (and the
``null`` optuna-dashboard writes when it deletes one into ``artifact.removed``), whichever
store holds the bytes. So a crash between the two steps leaves bytes without metadata,
never metadata without bytes; ``optuna-journal artifacts check`` names both kinds.
"""

from __future__ import annotations

from collections import OrderedDict
import contextlib
from dataclasses import dataclass
import hashlib
import json
import os
import tempfile
import threading
from typing import TYPE_CHECKING, Any, BinaryIO

import optuna
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from optuna_journal import log
from optuna_journal.backends import Backend
from optuna_journal.errors import ArtifactCorruptError
from optuna_journal.records import ArtifactRemoved, ArtifactUploaded, JournalHeader
from optuna_journal.replay import Rejected, State, apply
from optuna_journal.replay.apply import ARTIFACTS_ATTR_PREFIX, artifact_meta
from optuna_journal.replay.state import StudyRow

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore

__all__ = [
    "Artifact",
    "ArtifactCorruptError",
    "JournalArtifactStore",
    "artifacts",
    "open_store",
    "remove_artifact",
]

_SUM = ".sha256"
_TMP = ".tmp-"
_CHUNK = 1 << 20
_META_KEYS = ("artifact_id", "filename", "mimetype", "encoding")
"""The keys of Optuna's ``ArtifactMeta``, in its order."""


class JournalArtifactStore:
    """Artifacts as files in ``base_path`` (created if missing), each written atomically and
    checked on every read against the SHA-256 and size recorded beside it.

    Works on a local disk and on a shared filesystem (NFS): a rename is atomic on the
    server, so a reader on another host sees a whole artifact or none.

    Example:
        .. code::

            store = JournalArtifactStore("/shared/artifacts")
            optuna.artifacts.upload_artifact(
                artifact_store=store, file_path="model.pt", study_or_trial=trial
            )
    """

    def __init__(self, base_path: str | os.PathLike[str]) -> None:
        self._base = os.path.abspath(os.fspath(base_path))
        os.makedirs(self._base, exist_ok=True)

    @property
    def base_path(self) -> str:
        return self._base

    def path(self, artifact_id: str) -> str:
        """The file that holds the artifact ``artifact_id``.

        Raises:
            ValueError: The id could name a file outside the store, or one of its own.
        """
        check_id(artifact_id)
        return os.path.join(self._base, artifact_id)

    def open_reader(self, artifact_id: str) -> BinaryIO:
        """The artifact's bytes, checked whole before they are handed out.

        Raises:
            ArtifactNotFound: There is no such artifact.
            ArtifactCorruptError: Its bytes do not match its recorded SHA-256 and size.
        """
        path = self.path(artifact_id)
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise ArtifactNotFound(f"No artifact {artifact_id!r} in {self._base}.") from None
        try:
            expected = self._recorded(artifact_id)
            got = _digest(f)
            if got != expected:
                raise ArtifactCorruptError(
                    f"Artifact {artifact_id!r} at {path} holds {got[1]} bytes with SHA-256 "
                    f"{got[0]}; {expected[1]} bytes with SHA-256 {expected[0]} were written"
                )
            f.seek(0)
            return f
        except BaseException:
            f.close()
            raise

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        """Store ``content_body`` under ``artifact_id``: whole, synced, or not at all.

        Raises:
            ValueError: A bad id.
            FileExistsError: Another artifact holds this id (writing the same bytes again
                is a no-op, so a retried write succeeds).
        """
        path = self.path(artifact_id)
        fd, tmp = tempfile.mkstemp(prefix=_TMP, dir=self._base)
        try:
            with os.fdopen(fd, "wb") as f:
                digest, size = hashlib.sha256(), 0
                while chunk := content_body.read(_CHUNK):
                    f.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                f.flush()
                os.fsync(f.fileno())
            recorded = (digest.hexdigest(), size)
            if os.path.exists(path):
                if self._recorded(artifact_id) != recorded:
                    raise FileExistsError(
                        f"Artifact {artifact_id!r} already exists in {self._base} with other "
                        "bytes; artifact ids are never reused"
                    )
            else:
                _replace_synced(path + _SUM, f"{recorded[0]} {recorded[1]}\n".encode())
                os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        _fsync_directory(self._base)
        _written.put(artifact_id, recorded)

    def remove(self, artifact_id: str) -> None:
        """Delete the artifact, then its checksum.

        Raises:
            ArtifactNotFound: There is no such artifact.
        """
        path = self.path(artifact_id)
        try:
            os.unlink(path)
        except FileNotFoundError:
            raise ArtifactNotFound(f"No artifact {artifact_id!r} in {self._base}.") from None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + _SUM)
        _fsync_directory(self._base)

    def _recorded(self, artifact_id: str) -> tuple[str, int]:
        path = self.path(artifact_id) + _SUM
        try:
            with open(path, "rb") as f:
                sha, size = f.read().decode().split()
            return sha, int(size)
        except FileNotFoundError:
            raise ArtifactCorruptError(
                f"Artifact {artifact_id!r} has no checksum: {path} is missing (the bytes "
                "were not written by this store, or it was deleted)"
            ) from None
        except (ValueError, UnicodeDecodeError):
            raise ArtifactCorruptError(f"The checksum file {path} is unreadable") from None

    def listing(self) -> tuple[set[str], set[str], list[str]]:
        """What the directory holds: artifact ids, ids with a checksum, and leftover
        temporary files (of writers that died)."""
        ids, sums, leftovers = set(), set(), []
        for name in os.listdir(self._base):
            if name.startswith(_TMP):
                leftovers.append(name)
            elif name.endswith(_SUM):
                sums.add(name[: -len(_SUM)])
            elif not name.startswith("."):
                ids.add(name)
        return ids, sums, sorted(leftovers)


def check_id(artifact_id: object) -> None:
    """Refuse an id that could name a path outside a store's directory, or its own files.

    Raises:
        ValueError: It is not a plain file name.
    """
    if not isinstance(artifact_id, str) or not artifact_id:
        raise ValueError(f"An artifact id must be a non-empty string, not {artifact_id!r}.")
    bad = next((c for c in ("/", "\\", "\0") if c in artifact_id), None)
    if bad is not None or artifact_id in (".", "..") or os.path.isabs(artifact_id):
        raise ValueError(f"Artifact id {artifact_id!r} is not a plain file name.")
    if artifact_id.startswith(".") or artifact_id.endswith(_SUM) or len(artifact_id) > 200:
        raise ValueError(
            f"Artifact id {artifact_id!r} is reserved (a leading '.', a trailing {_SUM!r}) "
            "or too long (200 characters at most)."
        )


def _digest(f: BinaryIO) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := f.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _replace_synced(path: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=_TMP, dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some network filesystems (sshfs) cannot sync a directory
        pass
    finally:
        os.close(fd)


class _Recent:
    """The SHA-256 and size of the artifacts this process wrote lately, for the record
    that the storage appends when Optuna sets the artifact's attr (right after the write)."""

    def __init__(self, size: int = 4096) -> None:
        self._items: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def put(self, artifact_id: str, recorded: tuple[str, int]) -> None:
        with self._lock:
            self._items[artifact_id] = recorded
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def get(self, artifact_id: str) -> tuple[str, int] | None:
        with self._lock:
            return self._items.get(artifact_id)


_written = _Recent()


def attr_record(
    key: str, value: Any
) -> tuple[type[ArtifactUploaded | ArtifactRemoved], dict[str, Any]] | None:
    """The artifact record to append for Optuna's system attr ``key = value`` (its fields
    but the owner's id), or ``None`` if it is not an artifact's attr in exactly Optuna's form
    (it is then stored as an attr like any other)."""
    if not key.startswith(ARTIFACTS_ATTR_PREFIX) or not isinstance(value, str):
        return None
    artifact_id = key[len(ARTIFACTS_ATTR_PREFIX) :]
    try:
        meta = json.loads(value)
    except ValueError:
        return None
    if meta is None:
        return ArtifactRemoved, {"artifact_id": artifact_id}
    if not isinstance(meta, dict) or list(meta) != [
        "artifact_id",
        "filename",
        "mimetype",
        "encoding",
    ]:
        return None
    fields = {k: meta[k] for k in _META_KEYS[1:]}
    typed = isinstance(fields["filename"], str) and isinstance(fields["mimetype"], str)
    if not typed or not isinstance(fields["encoding"], (str, type(None))):
        return None
    if meta["artifact_id"] != artifact_id or artifact_meta(artifact_id, **fields) != value:
        return None
    recorded = _written.get(artifact_id)
    if recorded is not None:
        fields["sha256"], fields["size"] = recorded
    return ArtifactUploaded, {"artifact_id": artifact_id, **fields}


@dataclass(frozen=True)
class Artifact:
    """An artifact attached to a study or trial, as the log tells."""

    artifact_id: str
    study: str
    trial: int | None
    """The trial's number; ``None`` for an artifact of the study."""
    filename: str
    mimetype: str
    encoding: str | None
    size: int | None
    sha256: str | None
    record: int | None
    """The number of the record that uploaded it (``None``: folded by ``compact``)."""
    writer: str | None
    at: str | None


def artifacts(backend: Backend, position: int | None = None) -> list[Artifact]:
    """The artifacts attached in the log (up to record ``position``, if given), in upload
    order: those that study and trial attrs hold after replay, with what their
    ``artifact.uploaded`` record tells; those of deleted studies left out."""
    state = State()
    found: dict[str, tuple[int, ArtifactUploaded]] = {}
    for number, record in log.records(backend):
        if position is not None and number >= position:
            break
        if isinstance(record, JournalHeader):
            state.position += 1
            continue
        verdict = apply(state, record)
        if isinstance(verdict, Rejected):
            continue
        if isinstance(record, ArtifactUploaded):
            found[record.artifact_id] = (number, record)
        elif isinstance(record, ArtifactRemoved):
            found.pop(record.artifact_id, None)
    # The state is the truth (a compacted log keeps artifacts as plain attrs); the records
    # add what only they know: size, checksum, writer, time.
    owners: list[tuple[StudyRow, int | None, dict[str, Any]]] = [
        (study, None, study.system_attrs) for study in state.studies.values()
    ]
    owners += [
        (state.studies[row.study_id], row.number, row.system_attrs)
        for row in state.trials.values()
        if row.study_id in state.studies
    ]
    listed = []
    for study, trial, attrs in owners:
        for key, value in attrs.items():
            if not key.startswith(ARTIFACTS_ATTR_PREFIX):
                continue
            artifact_id = key[len(ARTIFACTS_ATTR_PREFIX) :]
            uploaded: int | None = None
            upload: ArtifactUploaded | None = None
            if artifact_id in found:
                uploaded, upload = found[artifact_id]
            try:
                meta = json.loads(value) if isinstance(value, str) else None
            except ValueError:
                meta = None
            if not isinstance(meta, dict):  # not an artifact's metadata (a null, say)
                continue
            listed.append(
                Artifact(
                    artifact_id=artifact_id,
                    study=study.name,
                    trial=trial,
                    filename=str(meta.get("filename")),
                    mimetype=str(meta.get("mimetype")),
                    encoding=meta.get("encoding"),
                    size=None if upload is None else upload.size,
                    sha256=None if upload is None else upload.sha256,
                    record=uploaded,
                    writer=None if upload is None else upload.writer,
                    at=None if upload is None else upload.at.isoformat(),
                )
            )
    listed.sort(key=lambda a: (a.record is not None, a.record or 0))
    return listed


def open_store(location: str) -> ArtifactStore:
    """The artifact store at ``location``: a directory (ours, :class:`JournalArtifactStore`),
    ``s3://BUCKET`` (boto3; ``AWS_ENDPOINT_URL`` and the usual AWS variables apply) or
    ``gs://BUCKET`` (google-cloud-storage; ``STORAGE_EMULATOR_HOST`` applies)."""
    if location.startswith("s3://"):
        import boto3
        from optuna.artifacts import Boto3ArtifactStore

        return Boto3ArtifactStore(_bucket(location), client=boto3.client("s3"))
    if location.startswith("gs://"):
        from google.cloud import storage
        from optuna.artifacts import GCSArtifactStore

        return GCSArtifactStore(_bucket(location), client=storage.Client())
    if "://" in location:
        raise ValueError(
            f"An artifact store is a directory, s3://BUCKET or gs://BUCKET, not {location}."
        )
    return JournalArtifactStore(location)


def _bucket(location: str) -> str:
    bucket = location.split("://", 1)[1].strip("/")
    if not bucket or "/" in bucket:
        raise ValueError(f"{location}: give the bucket alone (s3://BUCKET, gs://BUCKET).")
    return bucket


def remove_artifact(
    study_or_trial: optuna.Trial | FrozenTrial | optuna.Study,
    artifact_id: str,
    artifact_store: ArtifactStore,
    *,
    storage: BaseStorage | None = None,
) -> None:
    """Detach an artifact from its trial or study, then delete its bytes: a crash between
    the two leaves bytes without metadata (which ``artifacts check`` names), never metadata
    that points at nothing. Detaching is what optuna-dashboard does: the attr becomes
    JSON ``null``, which our storage records as ``artifact.removed``.

    Raises:
        ValueError: No ``storage`` for a ``FrozenTrial``.
        ArtifactNotFound: No such artifact is attached to it.
    """
    key, value = ARTIFACTS_ATTR_PREFIX + artifact_id, json.dumps(None)
    if isinstance(study_or_trial, optuna.Study):
        study_or_trial._storage.set_study_system_attr(study_or_trial._study_id, key, value)
    else:
        if storage is None:
            if not isinstance(study_or_trial, optuna.Trial):
                raise ValueError("storage is required for FrozenTrial.")
            storage = study_or_trial.storage
        storage.set_trial_system_attr(study_or_trial._trial_id, key, value)
    artifact_store.remove(artifact_id)


def stored_ids(store: ArtifactStore) -> set[str]:
    """Every artifact id that ``store`` holds bytes under (Optuna's stores as well as ours,
    also inside ``Backoff``).

    Raises:
        TypeError: A store this cannot list.
    """
    from optuna.artifacts import (
        Boto3ArtifactStore,
        FileSystemArtifactStore,
        GCSArtifactStore,
    )

    store = _unwrapped(store)
    if isinstance(store, JournalArtifactStore):
        return store.listing()[0]
    if isinstance(store, FileSystemArtifactStore):
        return set(os.listdir(store._base_path))
    if isinstance(store, Boto3ArtifactStore):
        pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket)
        return {item["Key"] for page in pages for item in page.get("Contents", [])}
    if isinstance(store, GCSArtifactStore):
        return {blob.name for blob in store.client.list_blobs(store.bucket_name)}
    raise TypeError(f"Cannot list the artifacts of a {type(store).__name__}.")


def check(listed: list[Artifact], store: ArtifactStore) -> list[dict[str, str]]:
    """What does not agree between the log's artifacts (``listed``) and ``store``: each as
    ``{"problem", "artifact_id", "detail"}``, the problem one of ``missing`` (metadata
    without bytes), ``corrupt`` (bytes that fail their SHA-256), ``orphan`` (bytes without
    metadata), ``no-checksum`` (our checksum file without bytes) and ``leftover`` (a
    temporary file of a writer that died)."""
    problems: list[dict[str, str]] = []

    def report(problem: str, artifact_id: str, detail: str) -> None:
        problems.append({"problem": problem, "artifact_id": artifact_id, "detail": detail})

    for artifact in listed:
        where = f"study {artifact.study!r}" + (
            "" if artifact.trial is None else f", trial {artifact.trial}"
        )
        try:
            with store.open_reader(artifact.artifact_id) as reader:
                sha, size = _digest(reader)
        except ArtifactNotFound:
            detail = f"{where}: uploaded in record {artifact.record}, not in the store"
            report("missing", artifact.artifact_id, detail)
            continue
        except ArtifactCorruptError as err:
            report("corrupt", artifact.artifact_id, str(err))
            continue
        if artifact.sha256 is not None and (sha, size) != (artifact.sha256, artifact.size):
            report(
                "corrupt",
                artifact.artifact_id,
                f"{where}: {size} bytes with SHA-256 {sha}; record {artifact.record} says "
                f"{artifact.size} bytes with SHA-256 {artifact.sha256}",
            )
    known = {a.artifact_id for a in listed}
    for artifact_id in sorted(stored_ids(store) - known):
        report("orphan", artifact_id, "stored, but attached to no study or trial")
    inner = _unwrapped(store)
    if isinstance(inner, JournalArtifactStore):
        ids, sums, leftovers = inner.listing()
        for artifact_id in sorted(sums - ids):
            detail = f"{inner.path(artifact_id)}{_SUM} has no artifact beside it"
            report("no-checksum", artifact_id, detail)
        for name in leftovers:
            detail = f"{os.path.join(inner.base_path, name)}: a write that never finished"
            report("leftover", name, detail)
    return problems


def _unwrapped(store: ArtifactStore) -> ArtifactStore:
    """The store inside any ``Backoff``."""
    from optuna.artifacts import Backoff

    while isinstance(store, Backoff):
        store = store._backend
    return store
