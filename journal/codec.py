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


_UNDECODABLE = (msgspec.DecodeError, RecursionError)
"""What decoding a payload that passed its checksum but is no record raises: msgspec raises
``RecursionError`` for msgpack nested deeper than it recurses (``b"\\x91" * 100_000``)."""

_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_decoder = msgspec.msgpack.Decoder(AnyRecord)
_header_decoder = msgspec.msgpack.Decoder(JournalHeader)


MAX_DEPTH = 100
"""How deeply an attribute's lists and dicts may nest. Deeper values would encode here but may
fail where they are read: msgspec's decoder and ``copy.deepcopy`` (every ``FrozenTrial``)
recurse, and give up at a depth that depends on the reader's own stack."""


def encode(record: AnyRecord | JournalHeader) -> bytes:
    """Encode one record.

    Raises:
        TypeError: A value in the record cannot be encoded.
        ValueError: A string in it is not valid Unicode (a lone surrogate such as
            ``"\\udcff"``, which UTF-8 cannot carry), or it nests too deeply.
    """
    try:
        return _encoder.encode(record)
    except (UnicodeEncodeError, RecursionError) as err:
        kind = type(record).__struct_config__.tag or type(record).__name__
        raise ValueError(f"cannot store a {kind} record: {_why(err)}") from None


def _why(err: Exception) -> str:
    if isinstance(err, UnicodeEncodeError):
        return f"a string holds {err.object[err.start : err.end]!r}, which UTF-8 cannot encode"
    return f"it nests deeper than {MAX_DEPTH} lists or dicts"


def encode_value(value: Any) -> bytes:
    """Encode a bare value (an attribute), to test that a record holding it will encode and
    will be read back as it is.

    Raises:
        TypeError: It is or holds an object that cannot be stored, or a set (msgpack would
            return it as a list).
        ValueError: It holds a string that is not valid Unicode, or nests deeper than
            :data:`MAX_DEPTH`.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:  # a loop, not recursion: a hostile value may nest 100,000 deep
        item, depth = stack.pop()
        if isinstance(item, (list, tuple, dict)):
            if depth >= MAX_DEPTH:
                raise ValueError(f"it nests deeper than {MAX_DEPTH} lists or dicts")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, (set, frozenset)):
            raise TypeError(
                f"a {type(item).__name__} cannot be stored in a journal (it would come back as "
                "a list); store a list"
            )
    try:
        return _encoder.encode(value)
    except (UnicodeEncodeError, RecursionError) as err:
        raise ValueError(_why(err)) from None


def decode_header(payload: bytes, location: str) -> JournalHeader:
    """Decode record 0 and check that this version can read the log.

    Raises:
        SchemaVersionError: Record 0 is not a header, or a newer schema wrote the log.
    """
    try:
        header = _header_decoder.decode(payload)
    except _UNDECODABLE as err:
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
    except _UNDECODABLE:
        pass
    for number, payload in enumerate(payloads, start=first):
        try:
            decode_one(payload)
        except _UNDECODABLE as err:
            raise _explain(payload, err, location, number) from err
    raise AssertionError("unreachable: a payload failed to decode once but not twice")


def _explain(payload: bytes, err: Exception, location: str, number: int) -> Exception:
    try:
        raw = msgspec.msgpack.decode(payload)
    except _UNDECODABLE:
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
