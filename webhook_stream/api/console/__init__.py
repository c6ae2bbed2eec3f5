"""The static web console (``/ui/``) and the serving of the vendored files in ``static/``.

:mod:`.page` serves the console; :mod:`.assets` serves a file by name from a fixed list
(also for ``/docs``). May import ``api.errors``; the console itself is HTML, CSS and
JavaScript that calls the JSON API.
"""
