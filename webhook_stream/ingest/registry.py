"""Writer schemas from a Schema Registry, for records in the Confluent wire format.

The wire format: magic byte ``0``, the schema id (4 bytes, big-endian), then the payload
(Avro binary, JSON text, or Protobuf message indexes and message). The writer schema is
fetched once by id (``GET /schemas/ids/{id}``: Confluent Schema Registry, Karapace and
Apicurio's ``/apis/ccompat/v7`` answer it alike) and kept in a bounded cache; ids are
immutable in a registry, so an entry never goes stale.

Three outcomes of a fetch, kept apart because they mean different things for the record:

* the schema: the record is decoded (:meth:`WriterSchema.decode`);
* ``404`` with error code ``40403``: the id is not in the registry, the record is
  rejected (``unknown_schema``); remembered for :data:`_UNKNOWN_TTL` seconds only, since
  a registry being restored from backup can learn ids;
* anything else (refused, timed out, 5xx, 401, a 404 without that code: a wrong URL):
  :class:`RegistryUnavailable`. Never the record's fault, so never a rejection: the
  caller's partition waits and asks again (:mod:`webhook_stream.ingest.consumer`).
"""

from __future__ import annotations

import io
import logging
import ssl
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import avro.io
import avro.schema
import httpx
import orjson

from webhook_stream.core.errors import ConfigError, RejectedEvent, WebhookStreamError
from webhook_stream.core.schemas import AVRO_DECODE_ERRORS
from webhook_stream.core.settings import Settings

__all__ = [
    "WIRE_MAGIC",
    "RegistryUnavailable",
    "SchemaRegistry",
    "WriterSchema",
    "parse_schema",
    "wire_schema_id",
]

log = logging.getLogger(__name__)

WIRE_MAGIC = 0
_HEADER = struct.Struct(">bI")
#: Writer schemas kept (a topic rarely has more than a handful of versions in flight).
CACHE_SIZE = 1000
#: Seconds an id the registry does not know is remembered as unknown.
_UNKNOWN_TTL = 30.0
_TIMEOUT = 5.0


class RegistryUnavailable(WebhookStreamError):
    """The Schema Registry could not answer (retriable): the record waits, never rejected."""


def wire_schema_id(value: bytes | None) -> int | None:
    """The schema id of a value in the Confluent wire format, else None."""
    if value is None or len(value) < _HEADER.size or value[0] != WIRE_MAGIC:
        return None
    return _HEADER.unpack_from(value)[1]


@dataclass(frozen=True, slots=True)
class WriterSchema:
    """One registry schema, parsed once; :meth:`decode` reads payloads written with it."""

    id: int
    kind: str  # AVRO, JSON or PROTOBUF (the registry's schemaType)
    name: str
    reader: Any = None  # avro.io.DatumReader for AVRO
    problem: str = ""  # why payloads of this schema are refused (set: every one is)

    def decode(self, value: bytes) -> Any:
        """The datum of a wire-format ``value``; ``RejectedEvent`` when it does not decode."""
        payload = memoryview(value)[_HEADER.size :]
        if self.problem:
            raise RejectedEvent(self.problem)
        if self.kind == "JSON":
            try:
                return orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise RejectedEvent(f"undecodable: schema id {self.id} (JSON): {exc}") from None
        try:
            return self.reader.read(avro.io.BinaryDecoder(io.BytesIO(payload)))
        except AVRO_DECODE_ERRORS as exc:
            raise RejectedEvent(
                f"undecodable: Avro payload does not match schema id {self.id} "
                f"({self.name}): {type(exc).__name__}"
            ) from None


def parse_schema(schema_id: int, doc: Any) -> WriterSchema:
    """A :class:`WriterSchema` from the registry's answer to ``GET /schemas/ids/{id}``."""
    if not isinstance(doc, dict) or not isinstance(doc.get("schema"), str):
        raise RegistryUnavailable(f"schema id {schema_id}: the registry's answer has no schema")
    kind = str(doc.get("schemaType") or "AVRO").upper()
    text = doc["schema"]
    if kind == "JSON":
        return WriterSchema(schema_id, kind, _json_title(text))
    if kind == "PROTOBUF":
        # Decoding needs the .proto compiled to descriptors (and its imports): not done.
        return WriterSchema(
            schema_id,
            kind,
            "",
            problem=f"unsupported_schema: schema id {schema_id} is Protobuf; only Avro and "
            "JSON Schema records are decoded",
        )
    if kind != "AVRO":
        return WriterSchema(
            schema_id, kind, "", problem=f"unsupported_schema: schema id {schema_id} is {kind}"
        )
    if doc.get("references"):
        return WriterSchema(
            schema_id,
            kind,
            "",
            problem=f"unsupported_schema: Avro schema id {schema_id} has references",
        )
    try:
        schema = avro.schema.parse(text)
    except (avro.schema.AvroException, ValueError, TypeError) as exc:
        return WriterSchema(
            schema_id,
            kind,
            "",
            problem=f"undecodable: Avro schema id {schema_id} does not parse: {exc}"[:300],
        )
    name = getattr(schema, "fullname", None) or schema.type
    return WriterSchema(schema_id, kind, name, reader=avro.io.DatumReader(schema))


def _json_title(text: str) -> str:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return ""
    title = doc.get("title") if isinstance(doc, dict) else None
    return title if isinstance(title, str) else ""


class SchemaRegistry:
    """Writer schemas by id, fetched from ``settings.schema_registry_url`` and cached."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        auth = None
        if settings.schema_registry_username:
            auth = httpx.BasicAuth(
                settings.schema_registry_username, str(settings.schema_registry_password)
            )
        self.url = settings.schema_registry_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.url,
            auth=auth,
            verify=_trust(settings.schema_registry_ca_file),
            timeout=_TIMEOUT,
            transport=transport,
            headers={"Accept": "application/vnd.schemaregistry.v1+json, application/json"},
        )
        self._schemas: OrderedDict[int, WriterSchema] = OrderedDict()
        self._unknown: OrderedDict[int, float] = OrderedDict()
        #: False from a failed fetch until the next one that is answered.
        self.reachable = True

    def cached(self, schema_id: int) -> WriterSchema | None:
        """The schema if known; raises ``RejectedEvent`` (``unknown_schema``) for an id
        the registry said it does not have; None when it must be fetched."""
        schema = self._schemas.get(schema_id)
        if schema is not None:
            self._schemas.move_to_end(schema_id)
            return schema
        until = self._unknown.get(schema_id)
        if until is not None:
            if time.monotonic() < until:
                raise RejectedEvent(f"unknown_schema: schema id {schema_id} is not in the registry")
            del self._unknown[schema_id]
        return None

    async def fetch(self, schema_id: int) -> None:
        """Ask the registry for ``schema_id`` and remember the answer (schema or unknown).

        Raises :class:`RegistryUnavailable` when there is no usable answer.
        """
        try:
            response = await self._client.get(f"/schemas/ids/{schema_id}")
        except httpx.HTTPError as exc:
            self.reachable = False
            # The exception's text may hold the URL; the URL may hold credentials: the type.
            raise RegistryUnavailable(
                f"Schema Registry not reachable ({type(exc).__name__})"
            ) from None
        if response.status_code == 404 and _error_code(response) == 40403:
            self.reachable = True
            self._unknown[schema_id] = time.monotonic() + _UNKNOWN_TTL
            while len(self._unknown) > CACHE_SIZE:
                self._unknown.popitem(last=False)
            return
        if response.status_code != 200:
            self.reachable = False
            raise RegistryUnavailable(
                f"Schema Registry answered {response.status_code} for schema id {schema_id}"
            )
        try:
            doc = response.json()
        except ValueError:
            self.reachable = False
            raise RegistryUnavailable(
                f"Schema Registry answered schema id {schema_id} with no JSON"
            ) from None
        self.reachable = True
        self.remember(parse_schema(schema_id, doc))

    def remember(self, schema: WriterSchema) -> None:
        """Cache ``schema`` (a fetch's result), the least recently used going first."""
        self._schemas[schema.id] = schema
        while len(self._schemas) > CACHE_SIZE:
            self._schemas.popitem(last=False)

    async def close(self) -> None:
        await self._client.aclose()


def _trust(cafile: str) -> ssl.SSLContext | bool:
    """What the client verifies the registry with: the CA file's certificates, else the
    system's; a file that is not a PEM bundle stops the worker at start-up, named."""
    if not cafile:
        return True
    try:
        return ssl.create_default_context(cafile=cafile)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"WEBHOOK_STREAM_SCHEMA_REGISTRY_CA_FILE: {cafile}: not a PEM CA bundle ({exc})"
        ) from None


def _error_code(response: httpx.Response) -> int | None:
    try:
        doc = response.json()
    except ValueError:
        return None
    code = doc.get("error_code") if isinstance(doc, dict) else None
    return code if isinstance(code, int) else None
