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

__all__ = ["Host", "WriteShare", "aiohttp_request", "host"]


class WriteShare(Protocol):
    """A tenant's share of API writes (:class:`~.tenancy.quota.WriteQuota`)."""

    def take(self, tenant: str, now: float) -> float:
        """Take one write; seconds to wait first (0: allowed now)."""
        ...


class Host(Protocol):
    """The serving app: its settings, the tenants' write quota and the worker's runtime."""

    ws_settings: Settings
    ws_write_quota: WriteShare
    #: :class:`webhook_stream.runtime.Runtime` (a role above ``api``).
    runtime: Any


def host(app: object) -> Host:
    """``app`` (a view's ``self.app``) as the :class:`Host` it is."""
    return cast(Host, app)


def aiohttp_request(request: Request) -> web.Request:
    """Faust's request as the aiohttp request it wraps at run time (item access, ``app``)."""
    return cast(web.Request, request)
