"""Request and response bodies of the API, as pydantic models: the handlers validate and
serialise through them and the OpenAPI document is generated from them.

:mod:`~api.schemas.base` has the conventions every model follows; one module per resource
(:mod:`~api.schemas.livestreams`, :mod:`~api.schemas.restream`, :mod:`~api.schemas.sessions`,
:mod:`~api.schemas.webhooks`), :mod:`~api.schemas.current_session` the live status a stream
carries and :mod:`~api.schemas.events` the bodies POSTed to webhooks.
"""
