"""A Schema Registry **stand-in** for tests: the documented subset of its REST API.

No Schema Registry server installs from the package registries reachable here (neither
Confluent's nor Karapace), so the tests run this: ``POST /subjects/{subject}/versions``
(register; the same schema text and type get the same id), ``GET /schemas/ids/{id}``
(``{"schema", "schemaType"}``, ``schemaType`` left out for Avro as the real one does;
an unknown id answers 404 with error code 40403), with HTTP basic auth when given
credentials, over TLS when given a server context. The producers are confluent-kafka's
own ``SchemaRegistryClient`` and serializers, so the bytes on the topic are what real
services write.

:meth:`down` closes the port (connection refused, as a registry that is away) and
:meth:`up` opens it again with what was registered.
"""

from __future__ import annotations

import base64
import itertools
import ssl
from typing import Any

from aiohttp import web

from webhook_stream.broker import free_port

_JSON = "application/vnd.schemaregistry.v1+json"


class SchemaRegistryStandIn:
    def __init__(
        self,
        auth: tuple[str, str] | None = None,
        first_id: int = 100,
        tls: ssl.SSLContext | None = None,
        prefix: str = "",
    ) -> None:
        self.port = free_port()
        #: A path the API sits under, as Apicurio's Confluent-compatible one (/apis/ccompat/v7).
        self.prefix = prefix
        self.auth = auth
        self.tls = tls
        self.schemas: dict[int, dict[str, Any]] = {}
        self.by_text: dict[tuple[str, str], int] = {}
        self.subjects: dict[str, list[int]] = {}
        self.requests: list[str] = []
        self._ids = itertools.count(first_id)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{self.prefix}"

    async def up(self) -> SchemaRegistryStandIn:
        app = web.Application(middlewares=[self._check_auth])
        app.router.add_post(self.prefix + "/subjects/{subject}/versions", self._register)
        app.router.add_get(self.prefix + "/schemas/ids/{id}", self._by_id)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, "127.0.0.1", self.port, reuse_address=True, ssl_context=self.tls
        )
        await site.start()
        return self

    async def down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def register(self, schema: str, schema_type: str = "AVRO", subject: str = "s") -> int:
        """Register directly (what a producer's first POST does)."""
        key = (schema_type, schema)
        if key not in self.by_text:
            schema_id = next(self._ids)
            self.by_text[key] = schema_id
            doc: dict[str, Any] = {"schema": schema}
            if schema_type != "AVRO":
                doc["schemaType"] = schema_type
            self.schemas[schema_id] = doc
        schema_id = self.by_text[key]
        versions = self.subjects.setdefault(subject, [])
        if schema_id not in versions:
            versions.append(schema_id)
        return schema_id

    @web.middleware
    async def _check_auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path}")
        if self.auth is not None:
            expected = "Basic " + base64.b64encode(":".join(self.auth).encode()).decode()
            if request.headers.get("Authorization") != expected:
                return web.json_response({"error_code": 401, "message": "Unauthorized"}, status=401)
        return await handler(request)

    async def _register(self, request: web.Request) -> web.Response:
        body = await request.json()
        schema_id = self.register(
            body["schema"], body.get("schemaType", "AVRO"), request.match_info["subject"]
        )
        return web.json_response({"id": schema_id}, content_type=_JSON)

    async def _by_id(self, request: web.Request) -> web.Response:
        doc = self.schemas.get(int(request.match_info["id"]))
        if doc is None:
            return web.json_response(
                {"error_code": 40403, "message": "Schema not found"}, status=404, content_type=_JSON
            )
        return web.json_response(doc, content_type=_JSON)
