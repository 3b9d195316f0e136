"""The live-stream side of the API: how the app runs its media and ties it to the database.

:mod:`~api.live.media_context` starts the RTMP listener and the live paths with the app (and
ends them); :mod:`~api.live.publish_auth` admits publishers by stream key;
:mod:`~api.live.stream_events` keeps live sessions and queues their webhook events;
:mod:`~api.live.recording_store` stores recordings; :mod:`~api.live.stream_view` renders a stream
outside a request and reads its live path and status for the routes.
"""
