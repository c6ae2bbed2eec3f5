"""The management HTTP API on the worker's Faust web server, in four parts by job.

* :mod:`.routes`: the route table (:mod:`.routes.views`) and what its views answer:
  subscriptions, test events, attempts, delivery status, replay, the console's summaries;
* :mod:`.tenancy`: who may call them (admin and tenant tokens, ``webhooks.tokens``);
* :mod:`.openapi`: the OpenAPI document built from the route table, served with a
  vendored viewer;
* :mod:`.console`: the static web console and the serving of vendored files (``static/``).

Shared by all four: one error shape (:mod:`.errors`), pagination (:mod:`.pagination`) and
the serving app's settings and runtime (:mod:`.host`).
May import every role below it (``core``, ``subscriptions``, ``ingest``, ``failures``,
``status``, ``delivery``); nothing but ``application`` and ``runtime`` imports it.
"""
