"""The upload backlog on disk, so that what waits for object storage survives the process.

Each recording waiting for uploads has ``<backlog>/<recording id>/`` holding its segments (hard
links of the live segments), its newest playlist not stored yet (``.playlist``) and the ETag of
its last stored playlist (``.etag``). :func:`left_behind` reads what a stopped or killed process
left there, so the next start sends it (see :mod:`workers.object_storage`). Blocking functions:
call them in a thread.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from workers.m3u8 import MEDIA_SUFFIXES
from workers.upload_state import WaitingSegment

PENDING_PLAYLIST = ".playlist"
"""The newest playlist of the recording not stored yet."""
STORED_ETAG = ".etag"
"""The ETag of the recording's last stored playlist (its next write is conditional on it)."""


@dataclass(frozen=True)
class LeftBehind:
    """What one recording still had waiting when the process stopped."""

    recording_id: str
    segments: list[WaitingSegment]
    playlist: str | None
    etag: str | None


def write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (renamed into place: never torn; not flushed to disk, as
    it only has to survive the process, like the page cache does)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{secrets.token_hex(4)}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def left_behind(backlog_dir: Path) -> list[LeftBehind]:
    """Every recording with segments or a playlist waiting in ``backlog_dir`` (segments in the
    order they were written); directories with nothing waiting are removed."""
    found: list[LeftBehind] = []
    if not backlog_dir.is_dir():
        return found
    for directory in sorted(backlog_dir.iterdir()):
        if not directory.is_dir() or directory.name.startswith("."):
            continue
        files = [
            (path, path.stat())
            for path in directory.iterdir()
            if path.name.endswith(MEDIA_SUFFIXES) and not path.name.startswith(".")
        ]
        files.sort(key=lambda found: (found[1].st_mtime_ns, found[0].name))
        segments = [WaitingSegment(path, stat.st_size) for path, stat in files]
        playlist = read_text(directory / PENDING_PLAYLIST)
        if not segments and playlist is None:
            shutil.rmtree(directory, ignore_errors=True)
            continue
        etag = read_text(directory / STORED_ETAG)
        found.append(LeftBehind(directory.name, segments, playlist, etag or None))
    return found


def playlist_stored(directory: Path, etag: str, pending: str | None) -> None:
    """A playlist write succeeded: remember its ETag; drop the pending playlist unless a newer
    one (``pending``, already on disk) waits."""
    write_text(directory / STORED_ETAG, etag)
    if pending is None:
        (directory / PENDING_PLAYLIST).unlink(missing_ok=True)
