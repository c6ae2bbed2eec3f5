"""The OpenAPI 3.1 document, built from the route table, and its viewer.

:mod:`.document` builds it, :mod:`.schemas` (with :mod:`.parts` and
:mod:`.console_schemas`) holds its JSON Schemas, :mod:`.operations` the Operation record,
and :mod:`.docs` serves ``/openapi.json`` and ``/docs``. May import ``api.errors``,
``api.pagination``, ``api.console`` (its assets) and the roles below ``api``.
"""
