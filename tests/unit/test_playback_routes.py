"""Playback routes are tried first, and their ``{segment}`` leaves other routes' names alone."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from api.routes import playback, thumbnails

STREAM = "/live/0123456789abcdef01234567"
RECORDING = "/recordings/0123456789abcdef01234567"


def _app() -> web.Application:
    app = web.Application()
    playback.register(app.router, reserved=thumbnails.NAMES)
    thumbnails.register(app.router)
    return app


@pytest.mark.parametrize(
    ("path", "template", "handler"),
    [
        (f"{STREAM}/index.m3u8", "/live/{id}/index.m3u8", playback.live_playlist),
        (f"{STREAM}/a1b2-part-12.m4s", "/live/{id}/{segment}", playback.live_segment),
        (f"{STREAM}/720p.m3u8", "/live/{id}/{segment}", playback.live_segment),
        (f"{STREAM}/evil.txt", "/live/{id}/{segment}", playback.live_segment),
        (
            f"{STREAM}/multivariant.m3u8",
            "/live/{id}/multivariant.m3u8",
            playback.live_multivariant_playlist,
        ),
        (
            f"{STREAM}/storage/index.m3u8",
            "/live/{id}/storage/index.m3u8",
            playback.latest_recording_playlist,
        ),
        (f"{STREAM}/thumbnail.jpg", "/live/{id}/thumbnail.jpg", thumbnails.live_thumbnail),
        (f"{STREAM}/thumbnail.png", "/live/{id}/thumbnail.png", thumbnails.live_thumbnail),
        (f"{STREAM}/thumbnail.jpgx", "/live/{id}/{segment}", playback.live_segment),
        (f"{RECORDING}/seg_00001.ts", "/recordings/{recordingId}/{segment}", None),
        (f"{RECORDING}/multivariant.m3u8", "/recordings/{recordingId}/{segment}", None),
        (
            f"{RECORDING}/thumbnail.png",
            "/recordings/{recordingId}/thumbnail.png",
            thumbnails.recording_thumbnail,
        ),
    ],
)
async def test_each_name_reaches_its_route_under_the_same_template(
    path: str, template: str, handler: object
) -> None:
    app = _app()
    match = await app.router.resolve(make_mocked_request("GET", path, app=app))
    resource = match.route.resource
    assert resource is not None and resource.canonical == template
    if handler is not None:
        assert match.handler is handler


def test_a_part_and_a_playlist_are_resolved_by_the_first_routes_under_live() -> None:
    app = _app()
    live = [r.canonical for r in app.router.resources() if r.canonical.startswith("/live/")]
    assert live[:2] == ["/live/{id}/index.m3u8", "/live/{id}/{segment}"]
