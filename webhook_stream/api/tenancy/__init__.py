"""Who may call the API: admin and tenant tokens, and what each may see.

:mod:`.auth` resolves the caller; :mod:`.tokenstore` keeps the tenant tokens (SHA-256 only)
in ``webhooks.tokens``; :mod:`.tokens` serves ``/tenants/{tenant_id}/tokens``. May import
``api.errors``, ``api.pagination`` and the roles below ``api``.
"""
