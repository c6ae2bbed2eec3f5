"""Subscriptions (endpoints): the model, its validation, the routing index and the table.

Owns the :class:`~.model.Subscription` model and its secrets (:mod:`.model`,
:mod:`.secrets`), the single validation gate for the API and the compacted topic
(:mod:`.validation`; the URL rules are :mod:`webhook_stream.http.urls`), the routing
index (:mod:`.index`) and the registry every worker fills from ``webhooks.subscriptions``
(:mod:`.registry`), and the writes to it, decided by one owner per endpoint id
(:mod:`.writes`, :mod:`.write_requests`). May
import ``core`` and ``http`` (for the URL rules and the address policy only).
"""
