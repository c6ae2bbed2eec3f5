"""Files shipped in ``api/static/``, served only by name from a fixed list.

The console (``/ui/``) and the API docs (``/docs``) both serve vendored files this way:
a name outside their list is a 404, so no path reaches anything else in the package.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib import resources

from faust.web import Response, View

from webhook_stream.api.errors import error_body

__all__ = ["asset_response", "static_file"]


@cache
def static_file(*path: str) -> bytes:
    """The bytes of ``api/static/<path>`` (read once)."""
    return resources.files("webhook_stream.api").joinpath("static", *path).read_bytes()


def asset_response(
    view: View,
    assets: Mapping[str, str],
    folder: tuple[str, ...],
    asset: str,
    headers: Mapping[str, str],
) -> Response:
    """``asset`` from ``folder`` with its media type from ``assets``; 404 if not listed."""
    media = assets.get(asset)
    if media is None:
        return view.json(error_body("not_found", "no such asset"), status=404)
    return view.bytes(static_file(*folder, asset), content_type=media, headers=dict(headers))
