from __future__ import annotations

from datetime import datetime, timezone
import math

from hypothesis import given, settings
import msgspec
import pytest

from optuna_journal import codec
from optuna_journal import records as r
from optuna_journal.errors import SchemaVersionError, UnknownRecordError
from tests.strategies import record_strategies

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)


def _same(a: object, b: object) -> bool:
    """Equality that treats NaN as equal to NaN, at any depth."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, msgspec.Struct) and isinstance(b, msgspec.Struct):
        return type(a) is type(b) and _same(msgspec.structs.asdict(a), msgspec.structs.asdict(b))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("kind", sorted(record_strategies, key=lambda k: k.__name__))
def test_codec_round_trips_every_record_kind(kind: type[r.Record]) -> None:
    @settings(max_examples=60)
    @given(record_strategies[kind])
    def check(record: r.Record) -> None:
        decoded = codec.decode([codec.encode(record)], "test", 1)  # type: ignore[arg-type]
        assert _same(decoded[0], record)

    check()


def test_codec_keeps_nan_and_infinities_exactly() -> None:
    for value in (math.nan, math.inf, -math.inf, -0.0, 5e-324):
        record = r.TrialIntermediateValueSet(
            writer="w", rid=1, at=NOW, trial_id=0, step=0, value=value
        )
        (back,) = codec.decode([codec.encode(record)], "test", 1)
        assert isinstance(back, r.TrialIntermediateValueSet)
        assert _same(back.value, value) and math.copysign(1, back.value) == math.copysign(1, value)


def test_codec_keeps_datetimes_to_the_microsecond() -> None:
    record = r.TrialStateSet(
        writer="w", rid=1, at=NOW, trial_id=1, state=r.StateCode.COMPLETE, values=(1.0,)
    )
    (back,) = codec.decode([codec.encode(record)], "test", 1)
    assert back.at == NOW


def test_codec_pins_tags() -> None:
    # Tags are the log's identity for each kind; renaming a class must never change them.
    assert {t.__struct_config__.tag for t in r.RECORD_TYPES} == {
        "study.created",
        "study.deleted",
        "study.user_attr_set",
        "study.system_attr_set",
        "trial.created",
        "trial.param_set",
        "trial.state_set",
        "trial.intermediate_value_set",
        "trial.user_attr_set",
        "trial.system_attr_set",
        "trial.heartbeat",
        "log.compacted",
        "artifact.uploaded",
        "artifact.removed",
    }


def test_codec_names_an_unknown_record_kind_and_its_number() -> None:
    payload = msgspec.msgpack.encode(["trial.teleported", "w", 1, NOW, 3])
    with pytest.raises(UnknownRecordError, match=r"log\.journal: record 7 .*'trial\.teleported'"):
        codec.decode([codec.encode(_deleted()), payload], "log.journal", 6)


def test_codec_refuses_a_newer_schema_by_name() -> None:
    newer = r.JournalHeader(
        schema_version=r.SCHEMA_VERSION + 1, library="optuna-journal 9", writer="w", at=NOW
    )
    with pytest.raises(SchemaVersionError, match="schema 2 by optuna-journal 9"):
        codec.decode_header(codec.encode(newer), "log.journal")


def test_codec_header_ignores_fields_added_later() -> None:
    payload = msgspec.msgpack.encode(
        {
            "op": "journal.header",
            "schema_version": 1,
            "library": "x",
            "writer": "w",
            "at": NOW,
            "future_field": [1, 2],
        }
    )
    assert codec.decode_header(payload, "log").schema_version == 1


def test_codec_accepts_numpy_scalars_like_optunas_json_storages() -> None:
    np = pytest.importorskip("numpy", reason="numpy comes with optuna")
    assert msgspec.msgpack.decode(codec.encode_value([np.float64(1.5), np.int64(3)])) == [1.5, 3]
    with pytest.raises(TypeError, match="object"):
        codec.encode_value(object())


def _deleted() -> r.StudyDeleted:
    return r.StudyDeleted(writer="w", rid=1, at=NOW, study_id=0)
