"""The management HTTP API on the worker's Faust web server.

Owns the routes (:mod:`.routes`): subscriptions, test events, attempts, delivery status and
replay; who may call them (:mod:`.auth`, tenant tokens in :mod:`.tokenstore` and
:mod:`.tokens`); one error shape (:mod:`.errors`); pagination; and the OpenAPI document
built from the route table (:mod:`.openapi`, served with a vendored viewer by
:mod:`.docs`). May import every role below it (``core``, ``subscriptions``, ``ingest``,
``failures``, ``status``); nothing but ``application`` and ``runtime`` imports it.
"""
