"""Failures: delayed retry topics, dead letters and replay.

Owns the retry scheduler that moves due records from ``webhooks.retry.<delay>`` back to
``webhooks.deliveries`` (:mod:`.retry`), the dead-letter writer (:mod:`.deadletter`) and
replay of dead letters and of source events (:mod:`.replay`). May import ``core``,
``subscriptions`` and ``ingest`` (replay re-runs the fan-out).
"""
