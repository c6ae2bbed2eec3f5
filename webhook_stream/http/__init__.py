"""HTTP egress: the delivery clients, the HTTP/1.1 protocol and the SSRF address policy.

Owns :class:`~.client.HttpClient` (keep-alive pool, timeouts, response limits), the
protocol and pool underneath it (:mod:`._http11`), every rule on a target URL
(:mod:`.urls`), the address policy checked at connect time (:mod:`.ssrf`), the transport
errors both clients report (:mod:`.errors`) and :class:`~.proxied.HttpxClient`, the same
interface through an egress proxy (httpx). Knows nothing of Kafka, subscriptions or records;
may import ``core`` only.
"""
