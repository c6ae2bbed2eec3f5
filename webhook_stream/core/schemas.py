"""The Avro schemas in ``schemas/*.avsc``: loading, validation and single-object encoding.

Records travel as JSON; the schemas document their shape and the tests check what the
worker writes against them. The one Avro payload read from Kafka is the input envelope
(``event_envelope``) in Avro single-object encoding: ``C3 01`` + the 8-byte little-endian
CRC-64-AVRO fingerprint of the schema's Parsing Canonical Form + the binary datum.
"""

from __future__ import annotations

import io
import struct
from functools import cache
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
from avro.schemanormalization import Fingerprint, ToParsingCanonicalForm

from webhook_stream.core.errors import RejectedEvent

__all__ = [
    "AVRO_DECODE_ERRORS",
    "SINGLE_OBJECT_MAGIC",
    "conforms",
    "decode_single_object",
    "encode_single_object",
    "fingerprint",
    "load_schema",
    "schema_names",
    "validation_errors",
]

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
SINGLE_OBJECT_MAGIC = b"\xc3\x01"
_HEADER_LEN = len(SINGLE_OBJECT_MAGIC) + 8

# What avro-python3's BinaryDecoder raises on truncated or garbled input, or a payload
# that does not fit its schema (it uses asserts; UnicodeDecodeError is a ValueError).
AVRO_DECODE_ERRORS = (
    avro.schema.AvroException,
    AssertionError,
    EOFError,
    IndexError,
    TypeError,
    ValueError,
    struct.error,
)


def schema_names() -> list[str]:
    """The stems of every ``schemas/*.avsc`` file, sorted."""
    return sorted(p.stem for p in SCHEMA_DIR.glob("*.avsc"))


@cache
def load_schema(name: str) -> avro.schema.Schema:
    """The parsed schema ``schemas/<name>.avsc``; ``KeyError`` if there is none."""
    path = SCHEMA_DIR / f"{name}.avsc"
    if not name.isidentifier() or not path.is_file():
        raise KeyError(f"no Avro schema named {name!r} in {SCHEMA_DIR}")
    return avro.schema.parse(path.read_text(encoding="utf-8"))


def conforms(name: str, datum: Any) -> bool:
    return bool(avro.io.Validate(load_schema(name), datum))


def validation_errors(name: str, datum: Any) -> list[str]:
    """Why ``datum`` does not conform to schema ``name`` (empty when it does).

    Messages name the field path and the expected/actual types, never the values:
    subscriptions carry secrets.
    """
    schema = load_schema(name)
    if avro.io.Validate(schema, datum):
        return []
    return _errors(schema, datum, "") or [f"datum does not conform to {schema.fullname}"]


def _type_name(schema: avro.schema.Schema) -> str:
    if isinstance(schema, avro.schema.NamedSchema):
        return schema.fullname
    if isinstance(schema, avro.schema.UnionSchema):
        return "[" + ", ".join(_type_name(s) for s in schema.schemas) + "]"
    if isinstance(schema, avro.schema.ArraySchema):
        return f"array<{_type_name(schema.items)}>"
    if isinstance(schema, avro.schema.MapSchema):
        return f"map<{_type_name(schema.values)}>"
    return schema.type


def _errors(schema: avro.schema.Schema, datum: Any, path: str) -> list[str]:
    """Walk ``datum`` alongside ``schema``, mirroring ``avro.io.Validate``, to find the culprits."""
    if avro.io.Validate(schema, datum):
        return []
    where = path or "<root>"
    mismatch = [f"{where}: expected {_type_name(schema)}, got {type(datum).__name__}"]
    if isinstance(schema, avro.schema.UnionSchema):
        # A nullable record/array: point inside it rather than at the union.
        branches = [s for s in schema.schemas if s.type != "null"]
        if len(branches) == 1 and branches[0].type in ("record", "array", "map"):
            return _errors(branches[0], datum, path)
        return mismatch
    if isinstance(schema, avro.schema.RecordSchema):
        if not isinstance(datum, dict):
            return mismatch
        prefix = f"{path}." if path else ""
        known = {f.name for f in schema.fields}
        errors = [f"{prefix}{k}: unexpected field" for k in datum if k not in known]
        for f in schema.fields:
            if f.name not in datum and not avro.io.Validate(f.type, None):
                errors.append(f"{prefix}{f.name}: missing required field ({_type_name(f.type)})")
            else:
                errors.extend(_errors(f.type, datum.get(f.name), prefix + f.name))
        return errors
    if isinstance(schema, avro.schema.ArraySchema) and isinstance(datum, list):
        return [
            e for i, item in enumerate(datum) for e in _errors(schema.items, item, f"{path}[{i}]")
        ]
    if isinstance(schema, avro.schema.MapSchema) and isinstance(datum, dict):
        errors = [
            f"{where}: map key {k!r} is not a string" for k in datum if not isinstance(k, str)
        ]
        for k, v in datum.items():
            errors.extend(_errors(schema.values, v, f"{path}[{k!r}]"))
        return errors
    if schema.type in ("int", "long") and isinstance(datum, int):
        return [f"{where}: integer out of range for {schema.type}"]
    return mismatch


def fingerprint(schema: avro.schema.Schema) -> bytes:
    """CRC-64-AVRO of the Parsing Canonical Form, 8 bytes little-endian (as the Avro spec's
    single-object encoding and the Java implementation use)."""
    return Fingerprint(ToParsingCanonicalForm(schema), "CRC-64-AVRO")


@cache
def _names_by_fingerprint() -> dict[bytes, str]:
    return {_fingerprint_of(name): name for name in schema_names()}


@cache
def _fingerprint_of(name: str) -> bytes:
    return fingerprint(load_schema(name))


def encode_single_object(name: str, datum: dict[str, Any]) -> bytes:
    """``datum`` in Avro single-object encoding; ``ValueError`` if it does not conform."""
    schema = load_schema(name)
    errors = validation_errors(name, datum)
    if errors:
        raise ValueError(f"not a valid {name}: " + "; ".join(errors))
    buf = io.BytesIO()
    buf.write(SINGLE_OBJECT_MAGIC + _fingerprint_of(name))
    avro.io.DatumWriter(schema).write(datum, avro.io.BinaryEncoder(buf))
    return buf.getvalue()


def decode_single_object(raw: bytes) -> tuple[str, dict[str, Any]]:
    """``(schema name, datum)`` of a single-object-encoded record of any known schema.

    Raises ``RejectedEvent`` with reason ``unknown_avro_fingerprint: <hex>`` or
    ``invalid_avro: <detail>``.
    """
    if not raw.startswith(SINGLE_OBJECT_MAGIC) or len(raw) < _HEADER_LEN:
        raise RejectedEvent("invalid_avro: not single-object encoded (C3 01 + 8-byte fingerprint)")
    fp = raw[len(SINGLE_OBJECT_MAGIC) : _HEADER_LEN]
    name = _names_by_fingerprint().get(fp)
    if name is None:
        raise RejectedEvent(f"unknown_avro_fingerprint: {fp.hex()}")
    reader = io.BytesIO(raw)
    reader.seek(_HEADER_LEN)
    try:
        datum = avro.io.DatumReader(load_schema(name)).read(avro.io.BinaryDecoder(reader))
    except AVRO_DECODE_ERRORS as exc:
        raise RejectedEvent(f"invalid_avro: malformed {name} datum ({type(exc).__name__})") from exc
    trailing = len(raw) - reader.tell()
    if trailing:
        raise RejectedEvent(f"invalid_avro: {name}: {trailing} trailing bytes")
    return name, datum
