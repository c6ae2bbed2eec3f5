"""``GET /ui/``: the web console, a static page that calls this JSON API.

Plain HTML, CSS and JavaScript in ``api/static/console/`` (no build step, no CDN, nothing
fetched from elsewhere): it works offline and behind a firewall. The page holds no data
of its own; every list comes from the API with the signed-in token, so what a tenant
token sees is what the API lets it see. The token is read from ``#token=`` (a fragment
never reaches a server or its logs) or a sign-in form and kept in ``sessionStorage``.
"""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View

from webhook_stream.api.console.assets import asset_response, static_file

__all__ = ["CONSOLE_ASSETS", "register_console_views"]

#: The files ``/ui/{asset}`` serves, with their media types (nothing else is reachable).
CONSOLE_ASSETS = {
    "console.js": "application/javascript",
    "console.css": "text/css",
}

#: Only this origin's scripts, styles and API; no framing, no referrer to receivers' URLs.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_NO_CACHE = {**_HEADERS, "Cache-Control": "no-cache"}


def register_console_views(app: Any) -> None:
    @app.page("/ui/")
    class Console(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(
                static_file("console", "index.html"), content_type="text/html", headers=_NO_CACHE
            )

    @app.page("/ui/{asset}")
    class ConsoleAsset(View):
        async def get(self, request: Request, asset: str) -> Response:
            return asset_response(self, CONSOLE_ASSETS, ("console",), asset, _NO_CACHE)
