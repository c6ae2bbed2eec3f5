"""Status: delivery states, the attempt log and the console's summaries.

Owns each worker's share of the history: the status partitions the ``<app_id>-status``
group gives it (:mod:`.owners`), tailed into a SQLite store on disk (:mod:`.view`,
:mod:`.store`, read by :mod:`.queries`) by a child process of the worker that answers over
a pipe (:mod:`.process`), and the routing of a query to the owner of its partition, or to
every owner with their shares merged (:mod:`.routing`, :mod:`.stats`). Also the rejected
input of ``webhooks.rejected``, for ``GET /rejected`` (:mod:`.rejected`). May import
``core`` only.
"""
