"""``GET /openapi.json`` and ``GET /docs``: the API described, for machines and for people.

The viewer is a vendored Swagger UI (``api/static/``, from the ``swagger-ui-dist`` npm
package, Apache-2.0; see ``static/NOTICE``): no CDN, so it works offline and leaks nothing.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import orjson
from faust.web import Request, Response, View

from webhook_stream.api.errors import error_body
from webhook_stream.api.openapi import build_document, registered_routes

__all__ = ["ASSETS", "register_doc_views"]

#: The files ``/docs/{asset}`` serves, with their media types (nothing else is reachable).
ASSETS = {
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui.css": "text/css",
    "docs.js": "application/javascript",
    "LICENSE": "text/plain",
    "NOTICE": "text/plain",
}


@cache
def _static(name: str) -> bytes:
    return resources.files("webhook_stream.api").joinpath("static", name).read_bytes()


def register_doc_views(app: Any) -> None:
    document: dict[str, bytes] = {}

    @app.page("/openapi.json")
    class OpenApi(View):
        async def get(self, request: Request) -> Response:
            if "doc" not in document:
                # Built from this server's own route table: an undocumented route fails here.
                routes = registered_routes(request.app.router)
                document["doc"] = orjson.dumps(build_document(routes))
            return self.bytes(document["doc"], content_type="application/json")

    @app.page("/docs")
    class Docs(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(_static("docs.html"), content_type="text/html")

    @app.page("/docs/{asset}")
    class DocsAsset(View):
        async def get(self, request: Request, asset: str) -> Response:
            media = ASSETS.get(asset)
            if media is None:
                return self.json(error_body("not_found", "no such asset"), status=404)
            response = self.bytes(_static(asset), content_type=media)
            response.headers["Cache-Control"] = "public, max-age=3600"
            return response
