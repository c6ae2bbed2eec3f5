"""Ingest: events from ``events.*`` to one delivery record per (event, endpoint).

Owns the events consumer (:mod:`.consumer`), the input forms (:mod:`.decoding`; the Avro
schemas are core's; :mod:`.sources` adds Schema Registry records, :mod:`.registry` and
:mod:`.schema_waits`, and per-topic JMESPath mappings, :mod:`.mappings`) and the fan-out
join with the subscription index (:mod:`.fanout`);
refused input goes to ``webhooks.rejected`` through :mod:`webhook_stream.core.rejected`.
May import ``core`` and ``subscriptions``.
"""
