"""HTTP egress: the delivery clients, the HTTP/1.1 protocol and the SSRF address policy.

Owns :class:`~.client.HttpClient` (keep-alive pool, timeouts, response limits, error
classes), the protocol and pool underneath it (:mod:`._http11`) and the address policy
checked at connect time (:mod:`.ssrf`); :class:`~.proxied.HttpxClient`, the same interface
through an egress proxy (httpx). Knows nothing of Kafka, subscriptions or records;
may import ``core`` only.
"""
