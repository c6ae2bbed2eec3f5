"""``/tenants/{tenant_id}/tokens``: issue, list and revoke tenant tokens (admin token only)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from faust.web import Request, Response, View

from webhook_stream.api.errors import ApiError
from webhook_stream.api.host import host
from webhook_stream.api.pagination import page
from webhook_stream.api.tenancy.auth import admin_only, check_tenant_id, json_body
from webhook_stream.api.tenancy.tokenstore import TenantToken
from webhook_stream.core.topics import TOKENS
from webhook_stream.http.urls import CONTROL

__all__ = ["register_token_views"]

_WRITE_VISIBLE_TIMEOUT = 5.0
_TOKEN_FIELDS = frozenset({"expires_at", "description"})


def _expires_at(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise ApiError("invalid", "must be an ISO-8601 timestamp", "expires_at")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError("invalid", "must be an ISO-8601 timestamp", "expires_at") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when <= datetime.now(UTC):
        raise ApiError("invalid", "must be in the future", "expires_at")
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _description(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 256 or CONTROL.search(value):
        raise ApiError(
            "invalid", "must be a string of at most 256 printable characters", "description"
        )
    return value


async def _parse_request(request: Request, timeout: float) -> dict[str, Any]:
    body = await json_body(request, timeout)
    if not isinstance(body, dict):
        raise ApiError("invalid", "must be a JSON object", "body")
    for name in body:
        if name not in _TOKEN_FIELDS:
            raise ApiError("invalid", "unknown field", CONTROL.sub("?", str(name))[:128])
    return {
        "expires_at": _expires_at(body.get("expires_at")),
        "description": _description(body.get("description")),
    }


class _TokenView(View):
    async def write(self, token_id: str, value: bytes | None) -> bool:
        """Produce to ``webhooks.tokens``; True once this worker has applied it."""
        runtime = host(self.app).runtime
        meta = await runtime.producer.send_and_wait(TOKENS, value, key=token_id.encode())
        return await runtime.tokens.wait_applied(
            meta.partition, meta.offset, _WRITE_VISIBLE_TIMEOUT
        )


def register_token_views(app: Any) -> None:
    @app.page("/tenants/{tenant_id}/tokens")
    class Tokens(_TokenView):
        @admin_only
        async def get(self, request: Request, tenant_id: str) -> Response:
            check_tenant_id(tenant_id)
            tokens = app.runtime.tokens.of_tenant(tenant_id)
            return self.json(page(tokens, lambda t: t.id, TenantToken.public, request.query))

        @admin_only
        async def post(self, request: Request, tenant_id: str) -> Response:
            check_tenant_id(tenant_id)
            fields = await _parse_request(request, app.ws_settings.web_client_timeout)
            stored, token = TenantToken.issue(tenant_id, **fields)
            visible = await self.write(stored.id, stored.stored_form())
            # The token is shown once, here; only its SHA-256 is kept.
            body = {**stored.public(), "token": token}
            if not visible:
                return self.json({**body, "pending": True}, status=202)
            return self.json(body, status=201)

    @app.page("/tenants/{tenant_id}/tokens/{token_id}")
    class OneToken(_TokenView):
        @admin_only
        async def delete(self, request: Request, tenant_id: str, token_id: str) -> Response:
            check_tenant_id(tenant_id)
            found = app.runtime.tokens.get(token_id)
            if found is None or found.tenant_id != tenant_id:
                raise ApiError("not_found", f"no token {token_id!r} of tenant {tenant_id!r}")
            visible = await self.write(token_id, None)
            body = {"id": token_id, "revoked": True}
            if not visible:
                return self.json({**body, "pending": True}, status=202)
            return self.json(body)
