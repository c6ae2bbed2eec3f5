"""``/event-types``: the event-type catalog (admin writes, every token reads), and
``POST /filter-check``: would this filter match this event (the console's check)?
Their entries in the OpenAPI document: :mod:`webhook_stream.api.openapi.event_type_operations`.

Writes go straight to the compacted ``webhooks.event_types`` (last write wins; the admin is
the one writer) and answer once this worker has applied them, or 202 ``pending``.
"""

from __future__ import annotations

from typing import Any

import orjson
from faust.web import Request, Response, View

from webhook_stream.api.errors import ApiError
from webhook_stream.api.host import host
from webhook_stream.api.pagination import page
from webhook_stream.api.tenancy.auth import admin_only, authorized, json_body
from webhook_stream.core.records import Event, SourceRef, iso_now
from webhook_stream.core.topics import EVENT_TYPES
from webhook_stream.http.urls import CONTROL
from webhook_stream.subscriptions.catalog import NAME, EventType, parse_event_type
from webhook_stream.subscriptions.filters import FilterSubject, compile_filter

__all__ = ["register_event_type_views", "subscription_warnings"]

_WRITE_VISIBLE_TIMEOUT = 5.0
_CHECK_FIELDS = ("id", "type", "tenant_id", "source", "occurred_at", "data", "headers")


def subscription_warnings(runtime: Any, body: object) -> dict[str, Any]:
    """``{"warnings": [...]}`` for a subscription write naming unknown or deprecated
    types (empty when there is nothing to say, or the body names no types)."""
    catalog = getattr(runtime, "catalog", None)
    if catalog is None or not isinstance(body, dict) or "event_types" not in body:
        return {}
    found = catalog.warnings(body["event_types"])
    return {"warnings": found} if found else {}


def _name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ApiError("invalid", "must be 1-256 characters of A-Z a-z 0-9 _ . : -", "name")
    return name


def _entry(entry: EventType) -> dict[str, Any]:
    return entry.to_dict()


def _key(entry: EventType) -> str:
    return entry.name


def _check_event(value: object) -> tuple[Event, list[tuple[str, bytes]]]:
    """The pasted event of a filter check, its fields optional."""
    if not isinstance(value, dict):
        raise ApiError("invalid", "must be a JSON object", "event")
    for key in value:
        if key not in _CHECK_FIELDS:
            raise ApiError("invalid", "unknown field", "event." + CONTROL.sub("?", str(key))[:64])
    headers = value.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ApiError("invalid", "must be an object of strings", "event.headers")
    source = value.get("source") or {}
    if not isinstance(source, dict):
        raise ApiError("invalid", "must be an object", "event.source")
    try:
        ref = SourceRef(
            str(source.get("topic", "")),
            int(source.get("partition", -1)),
            int(source.get("offset", -1)),
        )
    except (TypeError, ValueError):
        raise ApiError("invalid", "partition and offset must be integers", "event.source") from None
    for name in ("id", "type", "tenant_id", "occurred_at"):
        if value.get(name) is not None and not isinstance(value[name], str):
            raise ApiError("invalid", "must be a string", f"event.{name}")
    event = Event(
        id=value.get("id") or "evt_check",
        type=value.get("type") or "",
        occurred_at=value.get("occurred_at") or iso_now(),
        data=orjson.dumps(value.get("data")).decode(),
        source=ref,
        tenant_id=value.get("tenant_id"),
    )
    return event, [(k, v.encode()) for k, v in headers.items()]


class _CatalogView(View):
    @property
    def catalog(self) -> Any:
        return host(self.app).runtime.catalog

    def _ready(self) -> None:
        if not self.catalog.ready.is_set():
            raise ApiError("unavailable", "the event-type catalog is still loading; retry shortly")

    async def write(self, name: str, value: bytes | None) -> bool:
        """Produce to ``webhooks.event_types``; True once this worker has applied it."""
        runtime = host(self.app).runtime
        meta = await runtime.producer.send_and_wait(EVENT_TYPES, value, key=name.encode())
        return await self.catalog.wait_applied(meta.partition, meta.offset, _WRITE_VISIBLE_TIMEOUT)


def register_event_type_views(app: Any) -> None:
    @app.page("/event-types")
    class EventTypes(_CatalogView):
        @authorized
        async def get(self, request: Request) -> Response:
            self._ready()
            return self.json(page(self.catalog.all(), _key, _entry, request.query))

    @app.page("/event-types/{name}")
    class OneEventType(_CatalogView):
        @authorized
        async def get(self, request: Request, name: str) -> Response:
            self._ready()
            found = self.catalog.get(name)
            if found is None:
                raise ApiError("not_found", f"no event type {name[:256]!r}")
            return self.json(found.to_dict())

        @admin_only
        async def put(self, request: Request, name: str) -> Response:
            self._ready()
            _name(name)
            body = await json_body(request, app.ws_settings.web_client_timeout)
            if not isinstance(body, dict):
                raise ApiError("invalid", "must be a JSON object", "body")
            for server_field in ("created_at", "updated_at"):
                if server_field in body:
                    raise ApiError("invalid", "is set by the server", server_field)
            old = self.catalog.get(name)
            now = iso_now()
            stamped = {**body, "created_at": now if old is None else old.created_at}
            entry = parse_event_type({**stamped, "updated_at": now}, name)
            visible = await self.write(name, orjson.dumps(entry.to_dict()))
            status = 201 if old is None else 200
            if not visible:
                return self.json({**entry.to_dict(), "pending": True}, status=202)
            return self.json(entry.to_dict(), status=status)

        @admin_only
        async def delete(self, request: Request, name: str) -> Response:
            self._ready()
            if self.catalog.get(name) is None:
                raise ApiError("not_found", f"no event type {name[:256]!r}")
            visible = await self.write(name, None)
            body = {"name": name, "deleted": True}
            return self.json(
                {**body, "pending": True} if not visible else body,
                status=202 if not visible else 200,
            )

    @app.page("/filter-check")
    class FilterCheck(View):
        @authorized
        async def post(self, request: Request) -> Response:
            body = await json_body(request, app.ws_settings.web_client_timeout)
            if not isinstance(body, dict):
                raise ApiError("invalid", "must be a JSON object", "body")
            for key in body:
                if key not in ("filter", "event"):
                    raise ApiError("invalid", "unknown field", CONTROL.sub("?", str(key))[:64])
            compiled = compile_filter(body.get("filter"))  # 400 naming filter.<path>
            event, headers = _check_event(body.get("event"))
            matches = compiled is None or compiled.test(FilterSubject(event, headers))
            return self.json({"matches": matches})
