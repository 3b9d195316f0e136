"""Hand-run benchmarks of liverelay against nginx-rtmp and node-media-server (not run in CI).

See docs/performance.md. Entry points: ``python -m bench.compare`` (ingest/HLS ramp, plus the
API benchmark with ``--api``), ``python -m bench.api_load`` (API only),
``python -m bench.profile`` (py-spy profile of liverelay under N publishers) and
``python -m bench.soak`` (one node under steady load for a fixed time, checked for leaks).
"""
