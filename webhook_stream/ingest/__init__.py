"""Ingest: events from ``events.*`` to one delivery record per (event, endpoint).

Owns the events consumer (:mod:`.consumer`), the input forms (:mod:`.decoding`; the Avro
schemas are core's) and the fan-out join with the subscription index (:mod:`.fanout`);
refused input goes to ``webhooks.rejected`` through :mod:`webhook_stream.core.rejected`.
May import ``core`` and ``subscriptions``.
"""
