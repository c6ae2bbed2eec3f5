"""HTTP API on Faust's web server (SPEC section 8); the document is :mod:`..openapi.document`.

``/health``, ``/metrics``, ``/openapi.json`` and ``/docs`` are open; every other route
needs ``Authorization: Bearer <token>``: the admin token (``WEBHOOK_STREAM_API_TOKEN``)
or a tenant token, which sees only its tenant (:mod:`..tenancy.auth`). Subscription writes are
decided by the owner of the endpoint id (:mod:`.subscription_writes`) and answer once this
worker's registry has applied them (read your writes), or with 202 and ``"pending": true``
if that takes long.
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson
from faust.web import Request, Response, View

from webhook_stream.api.console.page import register_console_views
from webhook_stream.api.errors import (
    ApiError,
    code_for,
    error_body,
    json_errors,
    quiet_client_protocol_errors,
)
from webhook_stream.api.host import host
from webhook_stream.api.openapi.docs import register_doc_views
from webhook_stream.api.pagination import page, parse_page
from webhook_stream.api.routes.event_types import register_event_type_views, subscription_warnings
from webhook_stream.api.routes.flow_block import flow_block
from webhook_stream.api.routes.insight import (
    forwarding,
    register_insight_views,
    router_of,
    status_response,
    time_param,
)
from webhook_stream.api.routes.rejected import register_rejected_views
from webhook_stream.api.routes.replay import run_replay
from webhook_stream.api.routes.subscription_writes import (
    etag,
    if_match,
    precondition_failed,
    submit_write,
)
from webhook_stream.api.tenancy.auth import Principal, authorized, json_body, principal_of
from webhook_stream.api.tenancy.tokens import register_token_views
from webhook_stream.core.errors import InvalidSubscription
from webhook_stream.core.records import Delivery, Event, SourceRef, delivery_id_for, iso_now
from webhook_stream.core.settings import Settings
from webhook_stream.failures.replay import ReplayError
from webhook_stream.ingest.fanout import send_delivery
from webhook_stream.status.store import AttemptQuery, decode_cursor
from webhook_stream.subscriptions.catalog import EventType
from webhook_stream.subscriptions.model import Subscription, generate_secret
from webhook_stream.subscriptions.receiver_auth import keep_masked, refuse_auth_left_behind
from webhook_stream.subscriptions.secrets import (
    check_headers_follow_url,
    refuse_masks,
    unmask_headers,
)
from webhook_stream.subscriptions.signing_keys import generate_signing_key, public_key_of
from webhook_stream.subscriptions.validation import parse_subscription
from webhook_stream.subscriptions.writes import WriteRequest

__all__ = ["register_views"]

#: Fields the server sets; ``version`` moves with ``If-Match``, not in a body.
_SERVER_FIELDS = (
    "secret",
    "previous_secrets",
    "signing_key",
    "previous_signing_keys",
    "created_at",
    "updated_at",
    "version",
    "incarnation",
)


def _error(view: View, status: int, message: str, field: str | None = None) -> Response:
    """The one error shape (:mod:`..errors`), ``code`` from the status."""
    return view.json(error_body(code_for(status), message, field), status=status)


async def _json_body(view: View, request: Request) -> Any:
    return await json_body(request, host(view.app).ws_settings.web_client_timeout)


class _Base(View):
    """Shared helpers of the management views."""

    @property
    def runtime(self) -> Any:
        return host(self.app).runtime

    @property
    def settings(self) -> Settings:
        return host(self.app).ws_settings

    def find(self, endpoint_id: str) -> Subscription | None:
        return self.runtime.registry.get(endpoint_id)

    def principal(self, request: Request) -> Principal:
        return principal_of(request)

    def visible(self, request: Request, endpoint_id: str) -> Subscription | None:
        """The endpoint if the caller may see it; another tenant's is as absent (404)."""
        sub = self.find(endpoint_id)
        if sub is None or not self.principal(request).sees(sub.tenant_id):
            return None
        return sub


def register_views(app: Any) -> None:
    """Attach every route to ``app``."""
    app.web.web_app.middlewares.append(json_errors)
    quiet_client_protocol_errors()
    register_doc_views(app)
    register_token_views(app)
    register_console_views(app)
    register_insight_views(app)
    register_event_type_views(app)
    register_rejected_views(app)

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            runtime = app.runtime
            readiness = await runtime.readiness()
            checks = readiness["checks"]
            ready = all(checks.values())
            body = {
                "status": "ok" if ready else "starting",
                "ready": ready,
                "checks": checks,
                "subscriptions": len(runtime.registry.index),
                # A count, not names: /health is open. Which ones: the worker's log.
                "throttled_tenants": _throttled_tenants(runtime),
            }
            if (registry := readiness["schema_registry"]) is not None:
                body["schema_registry"] = registry  # waits, never rejects, while away
            return self.json(body, status=200 if ready else 503)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            app.runtime.metrics.subscriptions.set(len(app.runtime.registry.index))
            if app.runtime.status is not None:
                pending = app.runtime.status.process.pending()
                app.runtime.metrics.status_queries_pending.set(pending)
            return self.bytes(
                await app.runtime.render_metrics(),
                content_type="text/plain; version=0.0.4",
            )

    @app.page("/subscriptions")
    class Subscriptions(_Base):
        @authorized
        async def get(self, request: Request) -> Response:
            principal = self.principal(request)
            tenant = request.query.get("tenant_id")
            if tenant is not None:
                principal.check_tenant(tenant)
            else:
                tenant = principal.tenant_id
            subs = (
                s
                for s in self.runtime.registry.index.all()
                if tenant is None or s.tenant_id == tenant
            )
            body = page(subs, _sub_id, _listed, request.query)
            return self.json(body)

        @authorized
        async def post(self, request: Request) -> Response:
            principal = self.principal(request)
            try:
                data = await _json_body(self, request)
                if isinstance(data, dict) and "incarnation" in data:
                    raise InvalidSubscription("incarnation", "is set by the server")
                if isinstance(data, dict) and "id" not in data:
                    data = {**data, "id": "ep_" + secrets.token_hex(8)}
                if isinstance(data, dict):
                    data = _own_tenant(principal, data)
                sub = parse_subscription(data, allow_insecure=self.settings.allow_insecure_targets)
                refuse_masks(sub.headers)
            except InvalidSubscription as exc:
                return _error(self, 400, exc.message, field=exc.field)
            if self.find(sub.id) is not None:
                return _error(self, 409, f"subscription {sub.id!r} already exists", field="id")
            limit = self.settings.max_endpoints_per_tenant
            owned = self.runtime.registry.index.count(sub.tenant_id)
            if sub.tenant_id is not None and owned >= limit:
                raise ApiError(
                    "limit_exceeded",
                    f"tenant {sub.tenant_id!r} has {limit} endpoints, the most allowed",
                    "tenant_id",
                )
            # The secret is shown once, here; no other response ever carries it.
            write = WriteRequest(
                sub.id, "create", body=sub.to_dict(include_secrets=True), tenant=principal.tenant_id
            )
            shown = {"secret": sub.secret, **subscription_warnings(self.runtime, data)}
            return await submit_write(self, write, shown=shown, expected=sub)

    @app.page("/subscriptions/{endpoint_id}")
    class OneSubscription(_Base):
        @authorized
        async def get(self, request: Request, endpoint_id: str) -> Response:
            sub = self.visible(request, endpoint_id)
            if sub is None:
                return _error(self, 404, f"no subscription {endpoint_id!r}")
            flow = flow_block(getattr(self.runtime, "delivery", None), endpoint_id)
            return self.json(
                {**sub.to_dict(include_secrets=False), "flow": flow}, headers=etag(sub)
            )

        @authorized
        async def patch(self, request: Request, endpoint_id: str) -> Response:
            sub = self.visible(request, endpoint_id)
            if sub is None:
                return _error(self, 404, f"no subscription {endpoint_id!r}")
            wanted = if_match(request)
            changes = await _json_body(self, request)
            _check_patch(sub, changes, self.settings.allow_insecure_targets)
            if wanted is not None and wanted < sub.version:
                raise precondition_failed(endpoint_id, sub.version, wanted)
            tenant = self.principal(request).tenant_id
            # The owner merges the changes into the current record, masks resolved there.
            write = WriteRequest(endpoint_id, "patch", wanted, changes, tenant=tenant)
            return await submit_write(
                self, write, shown=subscription_warnings(self.runtime, changes) or None
            )

        @authorized
        async def delete(self, request: Request, endpoint_id: str) -> Response:
            if self.visible(request, endpoint_id) is None:
                return _error(self, 404, f"no subscription {endpoint_id!r}")
            tenant = self.principal(request).tenant_id
            write = WriteRequest(endpoint_id, "delete", if_match(request), tenant=tenant)
            return await submit_write(self, write)

    @app.page("/subscriptions/{endpoint_id}/rotate-secret")
    class RotateSecret(_Base):
        @authorized
        async def post(self, request: Request, endpoint_id: str) -> Response:
            sub = self.visible(request, endpoint_id)
            if sub is None:
                return _error(self, 404, f"no subscription {endpoint_id!r}")
            wanted = if_match(request)
            if wanted is not None and wanted < sub.version:
                raise precondition_failed(endpoint_id, sub.version, wanted)
            grace = self.settings.secret_rotation_grace
            # Chosen here (sealed on its way to the owner), so that even a 202 can show it.
            secret = generate_secret()
            body = {"grace_s": grace, "secret": secret}
            shown: dict[str, object] = {"secret": secret, "old_secret_valid_for_s": grace}
            if sub.signature_scheme != "hmac-sha256":
                body["signing_key"] = key = generate_signing_key()
                shown["public_key"] = public_key_of(key)
            write = WriteRequest(
                endpoint_id, "rotate", wanted, body, tenant=self.principal(request).tenant_id
            )
            return await submit_write(self, write, shown=shown, expected=sub)

    @app.page("/subscriptions/{endpoint_id}/test")
    class TestEvent(_Base):
        @authorized
        async def post(self, request: Request, endpoint_id: str) -> Response:
            sub = self.visible(request, endpoint_id)
            if sub is None:
                return _error(self, 404, f"no subscription {endpoint_id!r}")
            delivery = make_test_delivery(sub, self.runtime.catalog.example_for(sub.event_types))
            await (await send_delivery(self.runtime.producer, delivery))
            return self.json(
                {"delivery_id": delivery.delivery_id, "event_id": delivery.event.id}, status=202
            )

    @app.page("/subscriptions/{endpoint_id}/attempts")
    class Attempts(_Base):
        @authorized
        async def get(self, request: Request, endpoint_id: str) -> Response:
            sub = self.visible(request, endpoint_id)
            if sub is None:
                return _error(self, 404, f"no subscription {endpoint_id!r}")
            query = request.query
            limit, after = parse_page(query)
            outcome = query.get("status") or None
            if outcome not in (None, "succeeded", "retrying", "failed"):
                raise ApiError("invalid", "one of succeeded, retrying, failed", "status")
            try:
                position = None if after is None else decode_cursor(after)
            except ValueError as exc:
                raise ApiError("invalid", str(exc), "after") from None
            wanted = AttemptQuery(
                limit=limit,
                after=position,
                outcome=outcome,
                event_type=query.get("event_type") or None,
                since_ms=time_param(query, "since"),
                until_ms=time_param(query, "until"),
            )
            router = router_of(self.runtime)
            # This incarnation's only: an earlier endpoint of the same id is not this one.
            answer = await router.attempts(
                endpoint_id,
                wanted.to_dict(),
                incarnation=sub.incarnation or "",
                **forwarding(request),
            )
            return status_response(self, request, answer)

    @app.page("/deliveries/{delivery_id}")
    class DeliveryStatus(_Base):
        @authorized
        async def get(self, request: Request, delivery_id: str) -> Response:
            # ``?endpoint_id=`` routes straight to the owner; without it, owners are asked.
            endpoint_id = request.query.get("endpoint_id") or None
            router = router_of(self.runtime)
            answer = await router.delivery(delivery_id, endpoint_id, **forwarding(request))
            if answer.status == 200 and not self._sees_delivery(request, answer.body):
                return _error(self, 404, f"no delivery {delivery_id!r} in the status retention")
            return status_response(self, request, answer)

        def _sees_delivery(self, request: Request, found: dict[str, Any]) -> bool:
            """The caller's, and of the endpoint's current incarnation: a delivery of an
            earlier endpoint with the same id is nobody's now (the admin still sees those
            of an id that does not exist any more)."""
            principal = self.principal(request)
            sub = self.find(found.get("endpoint_id") or "")
            if sub is None:
                return principal.is_admin
            return principal.sees(sub.tenant_id) and (sub.incarnation or None) == (
                found.get("incarnation") or None
            )

    @app.page("/replay")
    class Replay(_Base):
        @authorized
        async def post(self, request: Request) -> Response:
            try:
                body = await _json_body(self, request)
                summary = await run_replay(
                    self.settings, self.runtime, body, self.principal(request)
                )
            except InvalidSubscription as exc:
                return _error(self, 400, exc.message, field=exc.field)
            except ReplayError as exc:
                return _error(self, 400, str(exc))
            return self.json(summary.to_dict())


def _throttled_tenants(runtime: Any) -> int:
    delivery = getattr(runtime, "delivery", None)
    return 0 if delivery is None else len(delivery.parking.throttled_tenants())


def _sub_id(sub: Subscription) -> str:
    return sub.id


def _listed(sub: Subscription) -> dict[str, Any]:
    return sub.to_dict(include_secrets=False)


def _check_patch(sub: Subscription, changes: object, allow_insecure: bool) -> None:
    """Refuse (400) what this worker's copy already shows to be wrong with a PATCH body."""
    if not isinstance(changes, dict):
        raise InvalidSubscription("body", "must be a JSON object")
    for name in _SERVER_FIELDS:
        if name in changes:
            raise InvalidSubscription(name, "cannot be changed with PATCH")
    if "tenant_id" in changes and changes["tenant_id"] != sub.tenant_id:
        # Moving an endpoint (with its secret) to another tenant would let it receive that
        # tenant's events: delete and create instead. (The owner checks it again.)
        raise InvalidSubscription(
            "tenant_id", "cannot be changed; delete and create the endpoint instead"
        )
    merged = {**sub.to_dict(include_secrets=True), **changes}
    moved = check_headers_follow_url(sub.url, dict(sub.headers), changes)
    if "headers" in changes and not moved:
        # A mask is refused by the owner only, which resolves it against the current
        # values: this copy may not have applied a change the caller has already read.
        merged["headers"] = unmask_headers(changes["headers"], dict(sub.headers))
    stored = sub.to_dict(include_secrets=True)
    refuse_auth_left_behind(moved, stored, changes)
    merged.update(keep_masked(changes, stored, moved))
    parse_subscription(merged, allow_insecure=allow_insecure, endpoint_id=sub.id)


def _own_tenant(principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
    """A tenant token creates in its own tenant: filled in when absent, 403 when another."""
    if principal.is_admin:
        return data
    if data.get("tenant_id") is None:
        return {**data, "tenant_id": principal.tenant_id}
    principal.check_tenant(data["tenant_id"])
    return data


def make_test_delivery(sub: Subscription, example: EventType | None = None) -> Delivery:
    """A signed test event for ``sub``, through the normal delivery path: the first example
    of a catalogued type it subscribes to, else ``webhook.test``."""
    now = iso_now()
    data = {"message": "webhook-stream test event", "endpoint_id": sub.id}
    event = Event(
        id="evt_test_" + secrets.token_hex(10),
        type="webhook.test" if example is None else example.name,
        occurred_at=now,
        data=orjson.dumps(data if example is None else example.examples[0]).decode(),
        source=SourceRef("api", -1, -1),
        tenant_id=sub.tenant_id,
    )
    return Delivery(
        delivery_id=delivery_id_for(event.id, sub.id),
        endpoint_id=sub.id,
        tenant_id=sub.tenant_id,
        event=event,
        created_at=now,
        origin="test",
        incarnation=sub.incarnation,
    )
