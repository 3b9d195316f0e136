"""Prometheus metrics: :mod:`~api.metrics.registry` holds the app's registry, its instruments,
the middleware that times requests and the ``GET /metrics`` handler;
:mod:`~api.metrics.listener` serves them on a listener of their own (and on the public port only
behind a token).
"""
