"""Tracing: W3C trace context carried through, OpenTelemetry spans when asked for.

Configured only by the standard ``OTEL_*`` variables. Tracing is on when
``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``) and ``OTEL_SDK_DISABLED``
is not ``true``. Off (the default), nothing of the SDK is imported and :data:`OFF`'s
methods hand the event's own context back: deliveries still carry it and receivers
still get it as ``traceparent``/``tracestate``.

On, the SDK reads the rest itself (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER[_ARG]``, ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``, ``..._HEADERS``,
``OTEL_BSP_*``). The spans:

* ``process <topic>`` (consumer): the fan-out of one event, child of the event's context or
  the root of a new trace; each delivery record carries *this* span's context, so every
  attempt of every delivery, retries and replays included, is a child of it.
* ``POST`` (client): one HTTP attempt; the ``traceparent`` the receiver gets names it.
* ``publish webhooks.retry.<d>`` / ``publish webhooks.deadletter`` (producer): a move.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "OFF",
    "TRACEPARENT",
    "TRACESTATE",
    "AttemptSpan",
    "Tracer",
    "enabled_in",
    "from_env",
    "log_ids",
    "valid_traceparent",
    "valid_tracestate",
]

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
# W3C: at most 32 list members of printable ASCII; 512 characters is what SDKs keep.
_TRACESTATE = re.compile(r"[\x20-\x7e]{1,512}")
# A path segment that looks like a token (Slack, Discord and Teams put theirs in the path).
_TOKENISH = re.compile(r"(?=[^/]*[0-9])(?=[^/]*[A-Za-z])[A-Za-z0-9_\-.~%]{20,}")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def _text(raw: str | bytes | None) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("ascii")
        except UnicodeDecodeError:
            return None
    return raw.strip()


def valid_traceparent(raw: str | bytes | None) -> str | None:
    """``raw`` if it is a W3C ``traceparent`` a receiver can use, else None (dropped)."""
    value = _text(raw)
    if not value:
        return None
    value = value.lower()
    m = _TRACEPARENT.fullmatch(value)
    if m is None or value.startswith("ff") or m[1] == _ZERO_TRACE or m[2] == _ZERO_SPAN:
        return None
    return value


def valid_tracestate(raw: str | bytes | None) -> str | None:
    """``raw`` if it is a header-safe ``tracestate`` of at most 512 characters, else None."""
    value = _text(raw)
    if not value or _TRACESTATE.fullmatch(value) is None:
        return None
    return value


def log_ids(traceparent: str | None) -> str:
    """``trace_id=... span_id=...`` for a log line about a delivery (``-`` when none)."""
    if traceparent is None:
        return "trace_id=- span_id=-"
    return f"trace_id={traceparent[3:35]} span_id={traceparent[36:52]}"


def enabled_in(environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` asks for spans to be exported."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    return exporters not in ("", "none")


class AttemptSpan:
    """One HTTP attempt's span (tracing on): its context goes out as ``traceparent``."""

    __slots__ = ("_span", "traceparent", "tracestate")

    def __init__(self, span: Any, traceparent: str | None, tracestate: str | None) -> None:
        self._span = span
        self.traceparent = traceparent
        self.tracestate = tracestate

    def finish(self, status: int | None, outcome: str, error: str | None, attempts: int) -> None:
        span = self._span
        if span.is_recording():
            span.set_attribute("webhook.attempt", attempts)
            span.set_attribute("webhook.outcome", outcome)
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            if error is not None or outcome != "succeeded":
                from opentelemetry.trace import Status, StatusCode

                # Semantic conventions: the error class, or the status code as text.
                span.set_attribute("error.type", error or str(status))
                span.set_status(Status(StatusCode.ERROR))
        span.end()


class Tracer:
    """Tracing off: every method is a cheap no-op that passes the event's context on."""

    __slots__ = ()

    enabled = False

    def fanout(
        self,
        topic: str,
        partition: int,
        offset: int,
        event_type: str,
        deliveries: int,
        traceparent: str | None,
        tracestate: str | None,
    ) -> tuple[str | None, str | None]:
        """The context the deliveries of one event carry."""
        return traceparent, tracestate

    def attempt(
        self,
        url: str,
        delivery_id: str,
        endpoint_id: str,
        attempt: int,
        traceparent: str | None,
        tracestate: str | None,
    ) -> AttemptSpan | None:
        """Start the span of one HTTP attempt (None when off)."""
        return None

    def moved(
        self,
        topic: str,
        delivery_id: str,
        reason: str,
        traceparent: str | None,
        tracestate: str | None,
    ) -> None:
        """A delivery was handed to a retry topic or to the dead-letter topic."""

    def shutdown(self) -> None:
        """Export what is buffered (tracing on)."""


OFF = Tracer()


def _safe_url(url: str) -> tuple[str, str | None, int | None]:
    """``url`` without userinfo, query and fragment, and with token-like path segments
    (20+ characters, letters and digits) as ``REDACTED``: they may be secrets. Host; port."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "", None, None
    netloc = host or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if port is not None:
        netloc = f"{netloc}:{port}"
    default = 443 if parts.scheme == "https" else 80
    path = "/".join(
        "REDACTED" if _TOKENISH.fullmatch(seg) else seg for seg in parts.path.split("/")
    )
    return f"{parts.scheme}://{netloc}{path}", host, port or default


class _SdkTracer(Tracer):
    """Tracing on: spans through the OpenTelemetry SDK."""

    __slots__ = ("_kind", "_propagator", "_provider", "_status", "_trace", "_tracer")

    enabled = True

    def __init__(self) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        from webhook_stream.core.version import __version__

        # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
        resource = Resource.create({"service.version": __version__})
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": "webhook-stream"}))
        self._provider = TracerProvider(resource=resource)  # sampler from OTEL_TRACES_SAMPLER
        for name in os.environ.get("OTEL_TRACES_EXPORTER", "").split(","):
            exporter = _exporter(name.strip().lower())
            if exporter is not None:
                self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("webhook_stream", __version__)
        self._propagator = TraceContextTextMapPropagator()
        self._trace = trace
        self._kind = trace.SpanKind

    def _context(self, traceparent: str | None, tracestate: str | None) -> Any:
        if traceparent is None:
            return None  # a new trace
        carrier = {TRACEPARENT: traceparent}
        if tracestate is not None:
            carrier[TRACESTATE] = tracestate
        return self._propagator.extract(carrier)

    def _inject(self, span: Any) -> tuple[str | None, str | None]:
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, self._trace.set_span_in_context(span))
        return carrier.get(TRACEPARENT), carrier.get(TRACESTATE)

    def fanout(
        self,
        topic: str,
        partition: int,
        offset: int,
        event_type: str,
        deliveries: int,
        traceparent: str | None,
        tracestate: str | None,
    ) -> tuple[str | None, str | None]:
        span = self._tracer.start_span(
            f"process {topic}",
            context=self._context(traceparent, tracestate),
            kind=self._kind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": topic,
                "messaging.destination.partition.id": str(partition),
                "messaging.kafka.offset": offset,
                "webhook.event_type": event_type,
                "webhook.deliveries": deliveries,
            },
        )
        span.end()
        return self._inject(span)

    def attempt(
        self,
        url: str,
        delivery_id: str,
        endpoint_id: str,
        attempt: int,
        traceparent: str | None,
        tracestate: str | None,
    ) -> AttemptSpan | None:
        full, host, port = _safe_url(url)
        attributes: dict[str, Any] = {
            "http.request.method": "POST",
            "url.full": full,
            "webhook.id": delivery_id,
            "webhook.endpoint_id": endpoint_id,
            "webhook.attempt": attempt,
        }
        if host is not None:
            attributes["server.address"] = host
        if port is not None:
            attributes["server.port"] = port
        span = self._tracer.start_span(
            "POST",
            context=self._context(traceparent, tracestate),
            kind=self._kind.CLIENT,
            attributes=attributes,
        )
        return AttemptSpan(span, *self._inject(span))

    def moved(
        self,
        topic: str,
        delivery_id: str,
        reason: str,
        traceparent: str | None,
        tracestate: str | None,
    ) -> None:
        span = self._tracer.start_span(
            f"publish {topic}",
            context=self._context(traceparent, tracestate),
            kind=self._kind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "publish",
                "messaging.destination.name": topic,
                "webhook.id": delivery_id,
                "webhook.reason": reason,
            },
        )
        span.end()

    def shutdown(self) -> None:
        self._provider.shutdown()


def _exporter(name: str) -> Any:
    if name == "otlp":
        # http/protobuf, the OTLP default; OTEL_EXPORTER_OTLP_* configure it.
        protocol = os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        )
        if protocol not in (None, "", "http/protobuf"):
            log.warning("OTLP protocol %r is not supported; using http/protobuf", protocol)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name not in ("", "none"):
        log.warning("unknown OTEL_TRACES_EXPORTER %r ignored", name)
    return None


def from_env(environ: Mapping[str, str] | None = None) -> Tracer:
    """:data:`OFF`, or an SDK tracer when ``environ`` (default: the process's) asks for one."""
    if not enabled_in(os.environ if environ is None else environ):
        return OFF
    tracer = _SdkTracer()
    log.info("tracing on: exporting spans (%s)", os.environ.get("OTEL_TRACES_EXPORTER"))
    return tracer
