"""The OpenAPI 3.1 document served at ``GET /openapi.json``: :mod:`~api.openapi.document`
assembles it and registers the route, :mod:`~api.openapi.livestreams` and
:mod:`~api.openapi.webhooks` write the paths of those resources (and the webhook events), and
:mod:`~api.openapi.parts` has the building blocks they share. Body schemas are generated from
the models in :mod:`api.schemas`.
"""
