"""Status: delivery states and the attempt log behind the status routes.

Owns the view built from ``webhooks.deliveries``, ``webhooks.attempts`` and
``webhooks.deadletter`` (:mod:`.view`) and the child process of each worker that runs it
and answers queries over a pipe (:mod:`.process`). May import ``core`` only.
"""
