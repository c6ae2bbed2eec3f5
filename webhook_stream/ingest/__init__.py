"""Ingest: events from ``events.*`` to one delivery record per (event, endpoint).

Owns the events consumer (:mod:`.consumer`), the input forms (:mod:`.decoding`; the Avro
schemas are core's), the fan-out join with the subscription index (:mod:`.fanout`) and the
writer of refused input to ``webhooks.rejected`` (:mod:`.rejected`). May import
``core`` and ``subscriptions``.
"""
