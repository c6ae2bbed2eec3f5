"""``GET /openapi.json`` and ``GET /docs``: the API described, for machines and for people.

The viewer is a vendored Swagger UI (``api/static/``, from the ``swagger-ui-dist`` npm
package, Apache-2.0; see ``static/NOTICE``): no CDN, so it works offline and leaks nothing.
"""

from __future__ import annotations

from typing import Any

import orjson
from faust.web import Request, Response, View

from webhook_stream.api.console.assets import asset_response, static_file
from webhook_stream.api.host import aiohttp_request
from webhook_stream.api.openapi.document import build_document, registered_routes

__all__ = ["ASSETS", "register_doc_views"]

#: The files ``/docs/{asset}`` serves, with their media types (nothing else is reachable).
ASSETS = {
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui.css": "text/css",
    "docs.js": "application/javascript",
    "LICENSE": "text/plain",
    "NOTICE": "text/plain",
}
#: The console's protections (:mod:`..console.page`): only this origin's files, no framing, no
#: referrer. Swagger UI sets inline styles, so styles allow them (scripts never).
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_CACHED = {**_HEADERS, "Cache-Control": "public, max-age=3600"}


def register_doc_views(app: Any) -> None:
    document: dict[str, bytes] = {}

    @app.page("/openapi.json")
    class OpenApi(View):
        async def get(self, request: Request) -> Response:
            if "doc" not in document:
                # Built from this server's own route table: an undocumented route fails here.
                routes = registered_routes(aiohttp_request(request).app.router)
                document["doc"] = orjson.dumps(build_document(routes))
            return self.bytes(document["doc"], content_type="application/json")

    @app.page("/docs")
    class Docs(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(static_file("docs.html"), content_type="text/html", headers=_HEADERS)

    @app.page("/docs/{asset}")
    class DocsAsset(View):
        async def get(self, request: Request, asset: str) -> Response:
            return asset_response(self, ASSETS, (), asset, _CACHED)
