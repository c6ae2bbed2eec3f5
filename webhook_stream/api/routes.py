"""HTTP API on Faust's web server (SPEC section 8).

``/health`` and ``/metrics`` are open; every other route needs
``Authorization: Bearer <WEBHOOK_STREAM_API_TOKEN>`` and refuses when no token is set.
Writes go to ``webhooks.subscriptions`` and answer once this worker's registry has
applied them (read your writes), or with 202 and ``"pending": true`` if that takes long.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import wraps
from typing import Any

import orjson
from faust.web import Request, Response, View

from webhook_stream.api.status_query import parse_attempt_query, parse_endpoint_hint
from webhook_stream.core.errors import InvalidQuery, InvalidSubscription
from webhook_stream.core.records import Delivery, Event, SourceRef, delivery_id_for, iso_now
from webhook_stream.core.topics import SUBSCRIPTIONS
from webhook_stream.failures.replay import ReplayError, parse_time, replay_deadletter, replay_events
from webhook_stream.ingest.fanout import send_delivery
from webhook_stream.status.routing import FORWARDED, Answer, unavailable
from webhook_stream.status.routing import error as status_error
from webhook_stream.subscriptions.model import Subscription
from webhook_stream.subscriptions.validation import parse_subscription

__all__ = ["register_views"]

_WRITE_VISIBLE_TIMEOUT = 5.0

Handler = Callable[..., Awaitable[Response]]


def _error(view: View, status: int, message: str, **extra: Any) -> Response:
    return view.json({"error": message, **extra}, status=status)


def authorized(handler: Handler) -> Handler:
    """Bearer-token check, constant time; no configured token means the route refuses."""

    @wraps(handler)
    async def check(view: View, request: Request, **kwargs: Any) -> Response:
        token = view.app.ws_settings.api_token
        if not token:
            return _error(
                view,
                401,
                "the management API is disabled: set WEBHOOK_STREAM_API_TOKEN on the worker",
            )
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.encode(), token.encode()):
            return _error(view, 401, "missing or wrong bearer token")
        return await handler(view, request, **kwargs)

    return check


async def _json_body(view: View, request: Request) -> Any:
    raw = await request.read()
    try:
        return orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise InvalidSubscription("body", f"not valid JSON ({exc.msg})") from None


class _Base(View):
    """Shared helpers of the management views."""

    @property
    def runtime(self) -> Any:
        return self.app.runtime

    @property
    def settings(self) -> Any:
        return self.app.ws_settings

    async def write(self, endpoint_id: str, value: bytes | None) -> bool:
        """Produce to ``webhooks.subscriptions``; True once this worker has applied it."""
        meta = await self.runtime.producer.send_and_wait(
            SUBSCRIPTIONS, value, key=endpoint_id.encode()
        )
        return await self.runtime.registry.wait_applied(
            meta.partition, meta.offset, _WRITE_VISIBLE_TIMEOUT
        )

    async def store(self, sub: Subscription, status: int, **extra: Any) -> Response:
        visible = await self.write(sub.id, self.runtime.registry.stored_form(sub))
        body = {**sub.to_dict(include_secrets=False), **extra}
        if not visible:
            return self.json({**body, "pending": True}, status=202)
        return self.json(body, status=status)

    def find(self, endpoint_id: str) -> Subscription | None:
        return self.runtime.registry.get(endpoint_id)


def register_views(app: Any) -> None:
    """Attach every route to ``app``."""

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            runtime = app.runtime
            checks = runtime.readiness()
            ready = all(checks.values())
            body = {
                "status": "ok" if ready else "starting",
                "ready": ready,
                "checks": checks,
                "subscriptions": len(runtime.registry.index),
            }
            return self.json(body, status=200 if ready else 503)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            app.runtime.metrics.subscriptions.set(len(app.runtime.registry.index))
            return self.bytes(
                app.runtime.metrics.render(),
                content_type="text/plain; version=0.0.4",
            )

    @app.page("/subscriptions")
    class Subscriptions(_Base):
        @authorized
        async def get(self, request: Request) -> Response:
            tenant = request.query.get("tenant_id")
            subs = [
                s.to_dict(include_secrets=False)
                for s in self.runtime.registry.index.all()
                if tenant is None or s.tenant_id == tenant
            ]
            return self.json({"data": subs, "count": len(subs)})

        @authorized
        async def post(self, request: Request) -> Response:
            try:
                data = await _json_body(self, request)
                if isinstance(data, dict) and "id" not in data:
                    data = {**data, "id": "ep_" + secrets.token_hex(8)}
                sub = parse_subscription(data, allow_insecure=self.settings.allow_insecure_targets)
            except InvalidSubscription as exc:
                return _error(self, 400, exc.message, field=exc.field)
            if self.find(sub.id) is not None:
                return _error(self, 409, f"subscription {sub.id!r} already exists", field="id")
            now = iso_now()
            sub = replace(sub, created_at=now, updated_at=now)
            # The secret is shown once, here; no other response ever carries it.
            return await self.store(sub, 201, secret=sub.secret)

    @app.page("/subscriptions/{endpoint_id}")
    class OneSubscription(_Base):
        @authorized
        async def get(self, request: Request, endpoint_id: str) -> Response:
            sub = self.find(endpoint_id)
            if sub is None:
                return _error(self, 404, f"no subscription {endpoint_id!r}")
            return self.json(sub.to_dict(include_secrets=False))

        @authorized
        async def patch(self, request: Request, endpoint_id: str) -> Response:
            sub = self.find(endpoint_id)
            if sub is None:
                return _error(self, 404, f"no subscription {endpoint_id!r}")
            try:
                changes = await _json_body(self, request)
                if not isinstance(changes, dict):
                    raise InvalidSubscription("body", "must be a JSON object")
                for name in ("secret", "previous_secrets", "created_at", "updated_at"):
                    if name in changes:
                        raise InvalidSubscription(name, "cannot be changed with PATCH")
                merged = {**sub.to_dict(include_secrets=True), **changes}
                updated = parse_subscription(
                    merged,
                    allow_insecure=self.settings.allow_insecure_targets,
                    endpoint_id=endpoint_id,
                )
            except InvalidSubscription as exc:
                return _error(self, 400, exc.message, field=exc.field)
            return await self.store(replace(updated, updated_at=iso_now()), 200)

        @authorized
        async def delete(self, request: Request, endpoint_id: str) -> Response:
            if self.find(endpoint_id) is None:
                return _error(self, 404, f"no subscription {endpoint_id!r}")
            visible = await self.write(endpoint_id, None)
            if not visible:
                return self.json({"id": endpoint_id, "deleted": True, "pending": True}, status=202)
            return self.json({"id": endpoint_id, "deleted": True})

    @app.page("/subscriptions/{endpoint_id}/rotate-secret")
    class RotateSecret(_Base):
        @authorized
        async def post(self, request: Request, endpoint_id: str) -> Response:
            sub = self.find(endpoint_id)
            if sub is None:
                return _error(self, 404, f"no subscription {endpoint_id!r}")
            grace = self.settings.secret_rotation_grace
            rotated = sub.rotate_secret(now=time.time(), grace_s=grace)
            rotated = replace(rotated, updated_at=iso_now())
            return await self.store(
                rotated, 200, secret=rotated.secret, old_secret_valid_for_s=grace
            )

    @app.page("/subscriptions/{endpoint_id}/test")
    class TestEvent(_Base):
        @authorized
        async def post(self, request: Request, endpoint_id: str) -> Response:
            sub = self.find(endpoint_id)
            if sub is None:
                return _error(self, 404, f"no subscription {endpoint_id!r}")
            delivery = make_test_delivery(sub)
            await (await send_delivery(self.runtime.producer, delivery))
            return self.json(
                {"delivery_id": delivery.delivery_id, "event_id": delivery.event.id}, status=202
            )

    @app.page("/subscriptions/{endpoint_id}/attempts")
    class Attempts(_Base):
        @authorized
        async def get(self, request: Request, endpoint_id: str) -> Response:
            try:
                query = parse_attempt_query(request.query)
            except InvalidQuery as exc:
                return _status_answer(self, bad_query(exc))
            router = self.runtime.status
            if router is None:
                return _status_answer(self, unavailable("the worker is starting"))
            answer = await router.attempts(endpoint_id, query.to_dict(), **_forwarding(request))
            return _status_answer(self, answer)

    @app.page("/deliveries/{delivery_id}")
    class DeliveryStatus(_Base):
        @authorized
        async def get(self, request: Request, delivery_id: str) -> Response:
            try:
                endpoint_id = parse_endpoint_hint(request.query)
            except InvalidQuery as exc:
                return _status_answer(self, bad_query(exc))
            router = self.runtime.status
            if router is None:
                return _status_answer(self, unavailable("the worker is starting"))
            answer = await router.delivery(delivery_id, endpoint_id, **_forwarding(request))
            return _status_answer(self, answer)

    @app.page("/replay")
    class Replay(_Base):
        @authorized
        async def post(self, request: Request) -> Response:
            try:
                body = await _json_body(self, request)
                summary = await run_replay(self.settings, self.runtime, body)
            except InvalidSubscription as exc:
                return _error(self, 400, exc.message, field=exc.field)
            except ReplayError as exc:
                return _error(self, 400, str(exc))
            return self.json(summary.to_dict())


async def run_replay(settings: Any, runtime: Any, body: Any) -> Any:
    """``POST /replay``: ``{"source": "deadletter"|"events", ...}`` as in the CLI."""
    if not isinstance(body, dict):
        raise InvalidSubscription("body", "must be a JSON object")
    source = body.get("source")
    times = {k: parse_time(body[k]) for k in ("since", "until") if body.get(k)}
    common = {
        "endpoint": body.get("endpoint_id"),
        "tenant": body.get("tenant_id"),
        "dry_run": bool(body.get("dry_run", False)),
        **times,
    }
    if source == "deadletter":
        return await replay_deadletter(
            settings, runtime.producer, force=bool(body.get("force", False)), **common
        )
    if source == "events":
        if not body.get("topic"):
            raise InvalidSubscription("topic", "required for source=events")
        if "since" not in times:
            raise InvalidSubscription("since", "required for source=events")
        return await replay_events(
            settings, runtime.producer, runtime.registry.index, topic=body["topic"], **common
        )
    raise InvalidSubscription("source", "must be 'deadletter' or 'events'")


def _forwarding(request: Request) -> dict[str, Any]:
    """What a status query needs to be forwarded to the owner of its partition."""
    return {
        "forwarded": request.headers.get(FORWARDED) == "1",
        "path_qs": request.url.path_qs,
        "auth": request.headers.get("Authorization", ""),
    }


def bad_query(exc: InvalidQuery) -> Answer:
    return status_error(400, "invalid_parameter", exc.message, exc.field)


def _status_answer(view: View, answer: Answer) -> Response:
    return view.json(answer.body, status=answer.status, headers=answer.headers or None)


def make_test_delivery(sub: Subscription) -> Delivery:
    """A signed ``webhook.test`` event for ``sub``, through the normal delivery path."""
    now = iso_now()
    event = Event(
        id="evt_test_" + secrets.token_hex(10),
        type="webhook.test",
        occurred_at=now,
        data=orjson.dumps({"message": "webhook-stream test event", "endpoint_id": sub.id}).decode(),
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
    )
