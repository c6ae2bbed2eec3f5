"""The management HTTP API on the worker's Faust web server.

Owns the routes (:mod:`.routes`): subscriptions, test events, attempts, delivery status and
replay. May import every role below it (``core``, ``subscriptions``, ``ingest``,
``failures``, ``status``); nothing but ``application`` imports it.
"""
