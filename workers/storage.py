"""Where recordings are kept: a small interface, and the local-disk implementation.

A recording is a directory of MPEG-TS segments (or fMP4 segments and their initialization
segments) plus an ``index.m3u8`` listing them. The writer
(:class:`workers.recording.RecordingOutput`) only talks to :class:`RecordingStorage`; object
storage implements the same calls in :mod:`workers.object_storage`. The local implementation
hard-links each live segment into the recording (no copy, no second transcode) and falls back to a
copy when the live directory is on another filesystem.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from workers.m3u8 import MEDIA_SUFFIXES, PLAYLIST_NAME

log = logging.getLogger(__name__)

TRASH_NAME = ".trash"
"""Directory under the recordings root holding withdrawn recordings until they are removed."""
_LINK_FALLBACK_ERRNOS = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP})
"""``os.link`` failures that a copy works around (other filesystem, no hard links there)."""


class RecordingFailed(OSError):
    """Storage gave up on one recording (e.g. its upload backlog went past its bound, or another
    writer changed its playlist): the recording cannot go on. The message says why."""


class StorageUnavailable(OSError):
    """A request to object storage failed (unreachable, refused, or an error answer)."""


@dataclass(frozen=True)
class StoredRecording:
    """What storage holds for one recording (used to finalize it after a crash)."""

    playlist: str | None
    """The text of its playlist, ``None`` if none was written."""
    segment_sizes: dict[str, int]
    """Bytes of each segment file present (initialization segments too), by name."""
    modified_at: float | None
    """Wall-clock time the playlist was last written, ``None`` without a playlist."""


class RecordingStorage(Protocol):
    """Keeps recordings: segments in, playlists replaced atomically, whole recordings out."""

    shared: bool
    """Whether every node reaches what is stored (another node may continue a recording)."""

    async def add_segment(self, recording_id: str, source: Path) -> int:
        """Store the complete segment file ``source`` under its own name; return its size."""
        ...

    async def write_playlist(self, recording_id: str, text: str) -> None:
        """Replace the recording's playlist so readers see the old or the new one, never a
        torn one, even after a crash."""
        ...

    async def flush(self, recording_id: str) -> None:
        """Wait until everything written for the recording is durably stored. Raises
        :class:`RecordingFailed` when it never will be, another ``OSError`` when it is not yet
        (e.g. storage is closing: it is sent again at the next start)."""
        ...

    async def inspect(self, recording_id: str) -> StoredRecording:
        """What is stored for the recording."""
        ...

    async def remove_segments(self, recording_id: str, names: list[str]) -> None:
        """Delete the named segments (files no playlist lists)."""
        ...

    async def delete(self, recording_id: str) -> None:
        """Delete the recording and all its files (no error if it does not exist)."""
        ...


class LocalRecordingStorage:
    """Recordings under ``root/<recording id>/`` on the local filesystem."""

    shared = False
    """Only this node reaches them."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def directory(self, recording_id: str) -> Path:
        """The directory of one recording."""
        if not recording_id or "/" in recording_id or recording_id.startswith("."):
            raise ValueError(f"invalid recording id {recording_id!r}")
        return self.root / recording_id

    async def add_segment(self, recording_id: str, source: Path) -> int:
        """Hard-link ``source`` into the recording (copy across filesystems)."""
        return await asyncio.to_thread(self._add_segment, self.directory(recording_id), source)

    async def write_playlist(self, recording_id: str, text: str) -> None:
        """Write to a temporary file, flush it to disk, then rename it over ``index.m3u8``."""
        await asyncio.to_thread(_replace_durably, self.directory(recording_id), text)

    async def flush(self, recording_id: str) -> None:
        """Nothing to wait for: every write is on disk when it returns."""

    async def inspect(self, recording_id: str) -> StoredRecording:
        """Read the playlist and list the segment files."""
        return await asyncio.to_thread(_inspect, self.directory(recording_id))

    async def remove_segments(self, recording_id: str, names: list[str]) -> None:
        """Unlink the named segments."""
        directory = self.directory(recording_id)

        def remove() -> None:
            for name in names:
                (directory / Path(name).name).unlink(missing_ok=True)

        await asyncio.to_thread(remove)

    async def delete(self, recording_id: str) -> None:
        """Withdraw the recording (:meth:`withdraw`), then remove its files."""
        withdrawn = await self.withdraw(recording_id)
        if withdrawn is not None:
            await asyncio.to_thread(shutil.rmtree, withdrawn, ignore_errors=True)

    @property
    def trash(self) -> Path:
        """Where withdrawn recordings wait to be removed (never served: not a recording id)."""
        return self.root / TRASH_NAME

    async def withdraw(self, recording_id: str) -> Path | None:
        """Move the recording out of ``root/<id>/`` at once (one rename), so nothing of it is
        served from now on; its files wait in :attr:`trash` for :meth:`empty_trash`. Returns
        where they went, ``None`` if there was nothing to move."""
        return await asyncio.to_thread(_move_to_trash, self.directory(recording_id), self.trash)

    async def empty_trash(self) -> None:
        """Remove every withdrawn recording's files (slow for large recordings: a thread)."""
        await asyncio.to_thread(_empty, self.trash)

    @staticmethod
    def _add_segment(directory: Path, source: Path) -> int:
        return link_or_copy(directory, source)


def link_or_copy(directory: Path, source: Path) -> int:
    """Hard-link ``source`` into ``directory`` under its own name (a copy across filesystems);
    return its size. Blocking: call it in a thread."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / source.name
    try:
        os.link(source, target)
    except FileExistsError:
        pass  # already stored (a retried call)
    except OSError as exc:
        if exc.errno not in _LINK_FALLBACK_ERRNOS:
            raise
        _copy_then_rename(source, target)
    return target.stat().st_size


def _move_to_trash(directory: Path, trash: Path) -> Path | None:
    """Rename ``directory`` to a fresh name in ``trash`` (same filesystem: atomic)."""
    trash.mkdir(parents=True, exist_ok=True)
    target = trash / f"{directory.name}-{secrets.token_hex(4)}"
    try:
        os.rename(directory, target)
    except FileNotFoundError:
        return None
    return target


def _empty(trash: Path) -> None:
    if not trash.is_dir():
        return
    for entry in trash.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _copy_then_rename(source: Path, target: Path) -> None:
    """Copy under a temporary name so that ``target`` only ever appears complete."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def _replace_durably(directory: Path, text: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / PLAYLIST_NAME
    tmp = directory / f".{PLAYLIST_NAME}.tmp"
    with open(tmp, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


def _inspect(directory: Path) -> StoredRecording:
    path = directory / PLAYLIST_NAME
    try:
        playlist: str | None = path.read_text(encoding="utf-8")
        modified_at: float | None = path.stat().st_mtime
    except FileNotFoundError:
        playlist, modified_at = None, None
    sizes: dict[str, int] = {}
    if directory.is_dir():
        for entry in os.scandir(directory):
            if entry.is_file() and entry.name.endswith(MEDIA_SUFFIXES) and entry.name[0] != ".":
                sizes[entry.name] = entry.stat().st_size
    return StoredRecording(playlist, sizes, modified_at)
