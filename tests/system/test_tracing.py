"""Tracing end to end on the real broker: trace context carried, spans exported over OTLP.

An event produced with a ``traceparent`` header reaches the receiver in the same trace on
its first attempt, its retry and its replay. With tracing off the receiver gets the
event's own context; with ``OTEL_TRACES_EXPORTER=otlp`` a worker exports its spans to an
OTLP/HTTP endpoint in this test, decoded with ``opentelemetry-proto``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from confluent_kafka import Producer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.support import Kafka, Receiver, Worker, event, eventually, json_of, uid
from webhook_stream.broker import EmbeddedBroker
from webhook_stream.core.schemas import conforms

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
TP = f"00-{TRACE_ID}-{PARENT_SPAN}-01"
TS = "rojo=00f067aa0ba902b7"
SECRET_QUERY = "token=q-s3cret-please-ignore"
#: A token in the path, as Slack, Discord and Teams webhook URLs carry theirs.
PATH_TOKEN = "Xk29fjslQp3nd8Ws91mZqr7T"
HOOK = f"/o/{PATH_TOKEN}"


def answers(*statuses: int):
    """A receiver script answering ``statuses`` in turn, then 200."""
    calls = iter(statuses)
    return lambda _req: next(calls, 200)


def parts(traceparent: str) -> tuple[str, str, str]:
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00" and len(trace_id) == 32 and len(span_id) == 16, traceparent
    return trace_id, span_id, "sampled" if int(flags, 16) & 1 else "not sampled"


async def replay_deadletter(worker: Worker, endpoint_id: str) -> None:
    async with worker.api() as api:
        r = await api.post("/replay", json={"source": "deadletter", "endpoint_id": endpoint_id})
    assert r.status_code == 200 and r.json()["requeued"] == 1, r.text


async def test_trace_context_carried_with_tracing_off(
    worker: Worker, kafka: Kafka, receiver: Receiver
) -> None:
    """The shared worker has no OTEL_* settings: the receiver gets the event's own
    ``traceparent``/``tracestate``, unchanged, on attempt, retry and replay; every record
    made from the event carries it and conforms to its schema."""
    ep = uid("ep")
    etype = uid("traced") + ".x"
    receiver.script["/t"] = answers(503, 400)  # retried, then fatal: dead-lettered
    await worker.create_subscription(id=ep, url=receiver.url("/t"), event_types=[etype])
    await kafka.send(
        "events.tracing",
        event(etype, id=uid("e")),
        headers=[("traceparent", TP.encode()), ("tracestate", TS.encode())],
    )
    calls = await receiver.wait_count("/t", 2, timeout=30)
    (dead,) = await kafka.wait_records(
        "webhooks.deadletter", lambda r: json_of(r)["endpoint_id"] == ep
    )
    assert json_of(dead)["traceparent"] == TP and json_of(dead)["tracestate"] == TS
    assert conforms("deadletter", json_of(dead))
    assert dict(dead.headers)["traceparent"] == TP.encode()
    # The first delivery and the retry the scheduler put back (same value).
    queued = await kafka.wait_records(
        "webhooks.deliveries", lambda r: json_of(r)["endpoint_id"] == ep, 2
    )
    assert [json_of(r)["traceparent"] for r in queued] == [TP, TP]
    assert all(conforms("delivery", json_of(r)) for r in queued)
    assert dict(queued[0].headers)["traceparent"] == TP.encode()
    retries = await kafka.wait_records(
        "webhooks.retry.1s", lambda r: json_of(r)["endpoint_id"] == ep
    )
    assert [json_of(r)["traceparent"] for r in retries] == [TP]
    assert conforms("delivery", json_of(retries[0]))

    await replay_deadletter(worker, ep)
    calls = await receiver.wait_count("/t", 3, timeout=30)
    assert [(c.headers["traceparent"], c.headers["tracestate"]) for c in calls] == [(TP, TS)] * 3
    assert len({c.headers["webhook-id"] for c in calls}) == 1
    assert "tracing on" not in worker.log_text()


# --------------------------------------------------------------------------- tracing on


@dataclass
class OtlpSink:
    """An OTLP/HTTP trace endpoint: ``POST /v1/traces`` with protobuf, spans kept."""

    spans: list[dict[str, Any]] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> OtlpSink:
        app = web.Application()
        app.router.add_post("/v1/traces", self._export)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _export(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        req = ExportTraceServiceRequest()
        req.ParseFromString(await request.read())
        for rs in req.resource_spans:
            self.resources.append({a.key: _value(a.value) for a in rs.resource.attributes})
            for ss in rs.scope_spans:
                for s in ss.spans:
                    self.spans.append(
                        {
                            "name": s.name,
                            "kind": s.kind,
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent": s.parent_span_id.hex() or None,
                            "status": s.status.code,
                            "attrs": {a.key: _value(a.value) for a in s.attributes},
                        }
                    )
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    def where(self, **match: Any) -> list[dict[str, Any]]:
        return [s for s in self.spans if all(s.get(k) == v for k, v in match.items())]


def _value(v: Any) -> Any:
    return getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None


def produce_with_confluent(bootstrap: str, topic: str, value: bytes, headers: list) -> None:
    """What a service instrumented with OpenTelemetry writes: a traceparent header."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    producer.produce(topic, value=value, headers=headers)
    assert producer.flush(30) == 0


async def test_spans_exported_over_otlp(
    own_broker: EmbeddedBroker, own_kafka: Kafka, receiver: Receiver, tmp_path: Path
) -> None:
    sink = await OtlpSink().start()
    worker = Worker(
        own_broker.url,
        tmp_path,
        env={
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
            "OTEL_SERVICE_NAME": "webhook-stream-test",
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
    ).start()
    try:
        await worker.wait_ready()
        assert "tracing on" in worker.log_text()
        ep = uid("ep")
        etype = uid("traced") + ".x"
        receiver.script[HOOK] = answers(503, 400)  # attempt 1 retried, 2 dead-lettered
        created = await worker.create_subscription(
            id=ep, url=receiver.url(HOOK) + "?" + SECRET_QUERY, event_types=[etype]
        )
        value = orjson.dumps(event(etype, id=uid("e")))
        await asyncio.to_thread(
            produce_with_confluent,
            own_broker.bootstrap,
            "events.otel",
            value,
            [("traceparent", TP.encode()), ("tracestate", TS.encode())],
        )
        await receiver.wait_count(HOOK, 2, timeout=30)
        await own_kafka.wait_records(
            "webhooks.deadletter", lambda r: json_of(r)["endpoint_id"] == ep
        )
        await replay_deadletter(worker, ep)
        calls = await receiver.wait_count(HOOK, 3, timeout=30)

        # Every attempt is in the event's trace; the span id it names is its attempt's.
        sent = [parts(c.headers["traceparent"]) for c in calls]
        assert {t for t, _, _ in sent} == {TRACE_ID}
        assert [f for _, _, f in sent] == ["sampled"] * 3
        assert len({s for _, s, _ in sent}) == 3 and PARENT_SPAN not in {s for _, s, _ in sent}
        assert all(c.headers["tracestate"] == TS for c in calls)

        def exported() -> list[dict[str, Any]]:
            posts = sink.where(trace_id=TRACE_ID, name="POST")
            moves = [s for s in sink.where(trace_id=TRACE_ID) if s["name"].startswith("publish")]
            return posts if len(posts) >= 3 and len(moves) >= 2 else []

        posts = await eventually(exported, timeout=30)
        (fanout,) = sink.where(trace_id=TRACE_ID, name="process events.otel")
        assert fanout["parent"] == PARENT_SPAN and fanout["kind"] == 5  # CONSUMER
        assert fanout["attrs"]["messaging.system"] == "kafka"
        assert fanout["attrs"]["webhook.deliveries"] == 1
        webhook_id = calls[0].headers["webhook-id"]
        by_span = {p["span_id"]: p for p in posts}
        # The replay numbers on from the two attempts before it (issue 30).
        expected = [(1, 503, "retrying"), (2, 400, "failed"), (3, 200, "succeeded")]
        for (_, span_id, _), (attempt, status, outcome) in zip(sent, expected, strict=True):
            post = by_span[span_id]
            assert post["parent"] == fanout["span_id"] and post["kind"] == 3  # CLIENT
            a = post["attrs"]
            assert a["http.request.method"] == "POST"
            assert a["url.full"] == receiver.url("/o/REDACTED"), a["url.full"]
            assert a["server.address"] == "127.0.0.1" and a["server.port"] == receiver.port
            assert a["webhook.id"] == webhook_id and a["webhook.endpoint_id"] == ep
            assert (a["webhook.attempt"], a["http.response.status_code"]) == (attempt, status)
            assert a["webhook.outcome"] == outcome
            assert post["status"] == (0 if outcome == "succeeded" else 2)  # UNSET / ERROR
        moves = {s["name"]: s for s in sink.where(trace_id=TRACE_ID) if s["kind"] == 4}
        assert moves["publish webhooks.retry.1s"]["parent"] == sent[0][1]
        assert moves["publish webhooks.deadletter"]["parent"] == sent[1][1]
        assert moves["publish webhooks.deadletter"]["attrs"]["webhook.reason"] == "fatal_status"
        assert {"service.name": "webhook-stream-test"}.items() <= sink.resources[0].items()
        # Nothing secret in any attribute: not the URL's query, not the signing secret.
        blob = orjson.dumps(sink.spans).decode()
        assert "q-s3cret" not in blob and PATH_TOKEN not in blob
        assert created["secret"] not in blob
        # The worker's log line about the dead-lettered delivery names its trace and span.
        assert f"trace_id={TRACE_ID} span_id={sent[1][1]}" in worker.log_text()

        # An event without trace context starts a new trace, rooted at its fan-out.
        await own_kafka.send("events.otel", event(etype, id=uid("e")))
        fresh = await receiver.wait_count(HOOK, 4, timeout=30)
        new_trace, new_span, _ = parts(fresh[3].headers["traceparent"])
        assert new_trace != TRACE_ID and "tracestate" not in fresh[3].headers
        root = await eventually(lambda: sink.where(trace_id=new_trace, name="process events.otel"))
        assert root[0]["parent"] is None
        post = await eventually(lambda: sink.where(trace_id=new_trace, span_id=new_span))
        assert post[0]["parent"] == root[0]["span_id"]
    finally:
        await worker.terminate()
        await sink.stop()
