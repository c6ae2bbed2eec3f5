"""The worker's /metrics with its fan-out child's added in: one family per name, samples
summed (each process counts what the other leaves at zero), creation times not doubled."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from webhook_stream.core.metrics import Metrics


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, key  # every sample once
            out[key] = s.value
    return out


def test_a_childs_samples_are_added_to_the_workers() -> None:
    worker, child = Metrics(), Metrics()
    worker.succeeded.inc(7)
    worker.attempt_duration.observe(0.02)
    worker.subscriptions.set(3)
    worker.undecodable.inc(1)
    child.fanned_out.inc(5)
    child.no_match.inc(2)
    child.undecodable.inc(2)
    child.registry_waiting.set(4)
    child.end_to_end.observe(0.5)  # a histogram only the child fills
    text = worker.render(child.samples())
    got = samples(text)
    assert got[("webhook_deliveries_total", (("outcome", "succeeded"),))] == 7
    assert got[("webhook_events_total", (("result", "fanned_out"),))] == 5
    assert got[("webhook_events_total", (("result", "no_match"),))] == 2
    assert got[("webhook_undecodable_batches_total", ())] == 3  # both counted some
    assert got[("webhook_subscriptions", ())] == 3  # the child leaves it at 0
    assert got[("webhook_schema_registry_waiting_partitions", ())] == 4
    assert got[("webhook_attempt_duration_seconds_count", ())] == 1
    assert got[("webhook_end_to_end_seconds_count", ())] == 1
    assert got[("webhook_end_to_end_seconds_bucket", (("le", "0.5"),))] == 1
    # One HELP and TYPE per family, as for the worker alone.
    lines = text.decode().splitlines()
    assert sum(line == "# TYPE webhook_events_total counter" for line in lines) == 1
    assert sum(line.startswith("# TYPE webhook_events_created") for line in lines) == 1
    created = [k for k in got if k[0] == "webhook_events_created"]
    assert len(created) == 3, created  # the worker's own: its creation times, not the child's


def test_without_a_child_the_exposition_is_the_workers_own() -> None:
    worker = Metrics()
    worker.succeeded.inc()
    assert worker.render() == worker.render(*())


def test_a_childs_sample_that_is_not_a_number_is_left_out() -> None:
    worker = Metrics()
    worker.subscriptions.set(3)
    child = [["webhook_subscriptions", [["webhook_subscriptions", {}, None]]]]
    assert samples(worker.render(child))[("webhook_subscriptions", ())] == 3
