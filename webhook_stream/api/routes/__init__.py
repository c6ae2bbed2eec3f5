"""The API's routes: the route table and the views' answers.

:mod:`.views` registers every view (its own: subscriptions, test events, attempts,
delivery status; and those of ``tenancy``, ``openapi`` and ``console``);
:mod:`.subscription_writes` is the API side of decided writes (ETag, If-Match, 412);
:mod:`.replay`, :mod:`.insight`, :mod:`.rejected` and :mod:`.flow_block` answer one part
each. May import
the other parts of ``api`` and every role below ``api``.
"""
