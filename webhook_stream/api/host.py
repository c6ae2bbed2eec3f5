"""What the API needs of the Faust app that serves it, typed.

The app is :class:`webhook_stream.application.WebhookStreamApp`, a role above ``api``, so
its type is described here instead of imported; a view's ``self.app`` is Faust's ``AppT``,
which knows neither attribute.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

from aiohttp import web
from faust.web import Request

from webhook_stream.core.settings import Settings

__all__ = ["Host", "aiohttp_request", "host"]


class Host(Protocol):
    """The serving app: its settings and the worker's runtime (its services)."""

    ws_settings: Settings
    #: :class:`webhook_stream.runtime.Runtime` (a role above ``api``).
    runtime: Any


def host(app: object) -> Host:
    """``app`` (a view's ``self.app``) as the :class:`Host` it is."""
    return cast(Host, app)


def aiohttp_request(request: Request) -> web.Request:
    """Faust's request as the aiohttp request it wraps at run time (item access, ``app``)."""
    return cast(web.Request, request)
