"""The core every role builds on: settings, errors, records, topics, Kafka clients, metrics.

Owns the one frozen :class:`~webhook_stream.core.settings.Settings`, the exception tree
(:mod:`~webhook_stream.core.errors`), every record written to Kafka and its headers
(:mod:`~webhook_stream.core.records`), the topic plan, the Kafka client factories and the
batching producer, the Prometheus metrics (consumer lag: :mod:`~webhook_stream.core.lag`),
the group-membership lease (a stalled process acts on nothing it may have lost), trace
context and spans (:mod:`~webhook_stream.core.tracing`), the sealing of secrets at rest and
the writer of refused input to ``webhooks.rejected`` (:mod:`~webhook_stream.core.rejected`).
May import nothing else of webhook-stream.
"""
