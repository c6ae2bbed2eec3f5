"""``python -m bench``: throughput, latency and memory of webhook-stream on one machine.

See ``bench/README.md``. Nothing here is imported by the package or its tests.
"""
