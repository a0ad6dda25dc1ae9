"""The one codec: records to msgpack payloads and back.

msgpack, not JSON: it carries NaN and +/-inf exactly, bytes, and datetimes as timestamps.
Framing (length + checksum) belongs to the medium; see
:mod:`optuna_journal.backends.frames`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from optuna_journal.errors import SchemaVersionError, UnknownRecordError
from optuna_journal.records import (
    RECORD_TAGS,
    SCHEMA_VERSION,
    AnyRecord,
    JournalHeader,
)


def _enc_hook(obj: Any) -> Any:
    # Optuna's JSON storages accept float and int subclasses such as numpy.float64; so do we.
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, int):
        return int(obj)
    item = getattr(obj, "item", None)
    if type(obj).__module__ == "numpy" and callable(item):
        return item()  # a numpy scalar: its Python value
    raise TypeError(f"objects of type {type(obj).__name__} cannot be stored in a journal")


_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_decoder = msgspec.msgpack.Decoder(AnyRecord)
_header_decoder = msgspec.msgpack.Decoder(JournalHeader)


def encode(record: AnyRecord | JournalHeader) -> bytes:
    """Encode one record.

    Raises:
        TypeError: A value in the record cannot be encoded.
    """
    return _encoder.encode(record)


def encode_value(value: Any) -> bytes:
    """Encode a bare value (an attribute), to test that a record holding it will encode."""
    return _encoder.encode(value)


def decode_header(payload: bytes, location: str) -> JournalHeader:
    """Decode record 0 and check that this version can read the log.

    Raises:
        SchemaVersionError: Record 0 is not a header, or a newer schema wrote the log.
    """
    try:
        header = _header_decoder.decode(payload)
    except msgspec.DecodeError as err:
        raise SchemaVersionError(
            f"{location}: record 0 is not an optuna-journal header ({err})"
        ) from err
    if header.schema_version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{location}: written with journal schema {header.schema_version} by "
            f"{header.library}; this optuna-journal reads schemas up to {SCHEMA_VERSION}. "
            "Upgrade optuna-journal to open it."
        )
    return header


def decode(payloads: Sequence[bytes], location: str, first: int) -> list[AnyRecord]:
    """Decode consecutive records; ``first`` is the number of the first, for messages.

    Raises:
        UnknownRecordError: A record kind this version does not know.
    """
    decode_one = _decoder.decode
    try:
        return [decode_one(p) for p in payloads]
    except msgspec.DecodeError:
        pass
    for number, payload in enumerate(payloads, start=first):
        try:
            decode_one(payload)
        except msgspec.DecodeError as err:
            raise _explain(payload, err, location, number) from err
    raise AssertionError("unreachable: a payload failed to decode once but not twice")


def _explain(payload: bytes, err: Exception, location: str, number: int) -> Exception:
    try:
        raw = msgspec.msgpack.decode(payload)
    except msgspec.DecodeError:
        raw = None
    tag = raw[0] if isinstance(raw, list) and raw else None
    if isinstance(tag, str) and tag not in RECORD_TAGS:
        return UnknownRecordError(
            f"{location}: record {number} is of kind {tag!r}, which this optuna-journal does "
            "not know; it was written by a newer version. Upgrade optuna-journal to read it."
        )
    return UnknownRecordError(
        f"{location}: record {number} passed its checksum but does not match the schema "
        f"({err}); it was written by an incompatible version."
    )
