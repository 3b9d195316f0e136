"""Webhook delivery: the outbox events are queued in, the dispatcher that claims and sends them
fairly (the claims queries and the fairness rules it uses), and the signed POST of one delivery.

The ``/v1/webhooks`` routes are in :mod:`api.routes.webhooks`, their bodies in
:mod:`api.schemas.webhooks` and their queries in :mod:`api.queries.webhooks`.
"""
