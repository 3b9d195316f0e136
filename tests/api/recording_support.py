"""Recordings made directly in the database and on disk (as a live path's recording output
would), for API tests that need recordings but no publisher."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp.test_utils import TestClient

from api import queries
from api.keys import DB_SESSIONMAKER, SETTINGS

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SEGMENT = b"\x47" * 376


def write_files(directory: Path, segments: tuple[str, ...]) -> None:
    directory.mkdir(parents=True)
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", "#EXT-X-PLAYLIST-TYPE:VOD"]
    for name in segments:
        (directory / name).write_bytes(SEGMENT)
        lines += ["#EXTINF:2.000,", name]
    (directory / "index.m3u8").write_text("\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n")


async def add_recording(
    client: TestClient,
    stream_id: str,
    *,
    started: datetime,
    status: str = "ready",
    segments: tuple[str, ...] = ("s-1-0.ts", "s-1-1.ts"),
) -> str:
    """A recording row, and its playlist and segment files."""
    async with client.app[DB_SESSIONMAKER]() as session, session.begin():
        recording = await queries.create_recording(session, stream_id, started)
        recording.status = status
        if status != "recording":
            recording.ended_at = started + timedelta(seconds=4)
            recording.duration, recording.bytes = 4.0, len(SEGMENT) * len(segments)
            recording.segments = len(segments)
        if status == "failed":
            recording.error = "the service stopped before a segment was recorded"
    write_files(client.app[SETTINGS].recordings_dir / recording.id, segments)
    return recording.id
