"""Delivery: from ``webhooks.deliveries`` to one signed HTTP attempt and its outcome.

Owns the deliveries consumer and its commits (:mod:`.consumer`), per-endpoint lanes and
offset tracking (:mod:`.lanes`), the durable record of what was finished beyond a
committed offset (:mod:`.progress`), one attempt -- prepare, send, handle the result
(:mod:`.dispatcher`), outcome classification and the retry delay (:mod:`.policy`), rate
limits (:mod:`.ratelimit`), endpoint health (:mod:`.health`) and Standard Webhooks signing
with the receiver-side :func:`~.signing.verify` (:mod:`.signing`). May import ``core``,
``http``, ``subscriptions``, ``ingest`` (the rejected writer) and ``failures`` (the
dead-letter writer).
"""
