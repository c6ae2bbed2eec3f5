"""HTTP API on Faust's web server: health and metrics (open), management (bearer token)."""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View

__all__ = ["register_views"]


def register_views(app: Any) -> None:
    runtime = app.runtime

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            ready = runtime.registry.ready.is_set() and runtime.delivery is not None
            body = {
                "status": "ok" if ready else "starting",
                "ready": ready,
                "subscriptions": len(runtime.registry.index),
            }
            return self.json(body, status=200 if ready else 503)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            runtime.metrics.subscriptions.set(len(runtime.registry.index))
            return self.bytes(
                runtime.metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8"
            )
