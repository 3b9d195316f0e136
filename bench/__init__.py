"""Hand-run benchmarks of liverelay against nginx-rtmp and node-media-server (not run in CI).

See docs/performance.md. Entry points: ``python -m bench.compare`` (ingest/HLS ramp, plus the
API benchmark with ``--api``), ``python -m bench.api_load`` (API only),
``python -m bench.profile`` (py-spy profile of liverelay under N publishers),
``python -m bench.soak`` (one node under steady load for a fixed time, checked for leaks) and
``python -m bench.cluster`` (two nodes on one PostgreSQL: takeover time after kill -9, database
transactions and CPU per live stream; docs/scaling.md).
"""
