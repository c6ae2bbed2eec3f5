"""The per-delivery metrics are plain numbers read when scraped, not the library's locked
ones: their exposition must be what prometheus_client's own Counter and Histogram give
for the same updates (dashboards and alerts read these names)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from webhook_stream.core.metrics import _E2E_BUCKETS, _LATENCY_BUCKETS, Metrics

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def exposed(text: bytes, families: set[str]) -> tuple[Samples, dict[str, tuple[str, str]]]:
    """Samples (creation times left out) and each family's type and help."""
    samples: Samples = {}
    kinds = {}
    for family in text_string_to_metric_families(text.decode()):
        if family.name not in families:
            continue
        kinds[family.name] = (family.type, family.documentation)
        for s in family.samples:
            if not s.name.endswith("_created"):
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, kinds


def test_hot_families_expose_what_the_library_would() -> None:
    ours = Metrics()
    reg = CollectorRegistry()
    deliveries = Counter(
        "webhook_deliveries",
        "Deliveries by final or intermediate outcome.",
        ["outcome"],
        registry=reg,
    )
    events = Counter("webhook_events", "Input events by result.", ["result"], registry=reg)
    duration = Histogram(
        "webhook_attempt_duration_seconds",
        "Duration of one HTTP attempt.",
        buckets=_LATENCY_BUCKETS,
        registry=reg,
    )
    e2e = Histogram(
        "webhook_end_to_end_seconds",
        "Event timestamp to successful delivery.",
        buckets=_E2E_BUCKETS,
        registry=reg,
    )
    for outcome in ("succeeded", "retried", "dead_lettered"):
        deliveries.labels(outcome)
    for result in ("fanned_out", "no_match", "rejected"):
        events.labels(result)
    # Values on, just below and just above bucket bounds, zero and past the last bound.
    values = [0.0, 0.005, 0.0050001, 0.0049, 0.1, 1, 1.5, 60, 61, 86400, 1e9]
    for v in values:
        ours.attempt_duration.observe(v)
        duration.observe(v)
        ours.end_to_end.observe(v)
        e2e.observe(v)
    for n, (mine, theirs) in enumerate(
        [
            (ours.succeeded, deliveries.labels("succeeded")),
            (ours.retried, deliveries.labels("retried")),
            (ours.fanned_out, events.labels("fanned_out")),
            (ours.rejected, events.labels("rejected")),
        ]
    ):
        for _ in range(n + 1):
            mine.inc()
            theirs.inc()
    names = {
        "webhook_deliveries",
        "webhook_events",
        "webhook_attempt_duration_seconds",
        "webhook_end_to_end_seconds",
    }
    got, got_kinds = exposed(ours.render(), names)
    want, want_kinds = exposed(generate_latest(reg), names)
    assert got_kinds == want_kinds and len(got_kinds) == 4
    assert got == want
    assert got[("webhook_attempt_duration_seconds_bucket", (("le", "0.005"),))] == 3
    assert got[("webhook_deliveries_total", (("outcome", "dead_lettered"),))] == 0


def test_hot_families_have_creation_times() -> None:
    text = Metrics().render().decode()
    for name in (
        'webhook_deliveries_created{outcome="succeeded"}',
        'webhook_events_created{result="rejected"}',
        "webhook_attempt_duration_seconds_created",
        "webhook_end_to_end_seconds_created",
    ):
        assert any(line.startswith(name + " ") for line in text.splitlines()), name
