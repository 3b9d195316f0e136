"""The renditions of one standard-mode (MPEG-TS) session: the source's live playlist and, for a
stream with a ladder, one live playlist per rung and the multivariant ``index.m3u8`` over them.

Which rungs a session gets is decided once, when its first ffmpeg run starts (once the hub knows
the tracks and the picture size: :func:`workers.rung_decision.decide_rungs`). Without a rung
everything is as before: the source's playlist is ``index.m3u8`` and ffmpeg's command is
:func:`workers.argv.hls_argv`. With rungs, the source's playlist is ``source.m3u8``, each rung's
``<rung>.m3u8`` (segments ``<run>-<rung>-<n>.ts``), all in the stream's live directory, and
``index.m3u8`` lists them (:mod:`workers.ladder_playlist`) once the source has a segment and
every rung has one too (or the source a second: a lagging rung is listed when it has one).
Only the source's segments go to the recording.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ingest.hub import StreamHub
from workers.argv import hls_argv
from workers.ladder_argv import RungOutput, ladder_hls_argv
from workers.ladder_playlist import (
    Variant,
    audio_codec_string,
    join_codecs,
    render_multivariant,
    rung_resolution,
    rung_video_codec_string,
    segment_bandwidth,
    source_resolution,
)
from workers.m3u8 import PLAYLIST_NAME, Segment, write_atomically
from workers.playlist import LivePlaylist
from workers.renditions import SOURCE, Rung
from workers.rung_decision import decide_rungs

log = logging.getLogger(__name__)


class RenditionSet:
    """The live playlists of one session's renditions (see the module docstring)."""

    def __init__(
        self,
        source: LivePlaylist,
        *,
        requested: Sequence[str] = (SOURCE,),
        segment_seconds: float,
    ) -> None:
        self.source = source
        self._requested = tuple(requested)
        self._segment_seconds = segment_seconds
        self.rungs: tuple[tuple[Rung, LivePlaylist], ...] = ()
        self._hub: StreamHub | None = None
        self._listed: int | None = None
        """Segments published over all renditions when ``index.m3u8`` was last rendered."""
        self._master: str | None = None
        self.dropped: list[str] = []
        """Rungs dropped because the transcoding could not keep up, in the order dropped."""
        self._retiring: list[LivePlaylist] = []
        """Playlists of dropped rungs, to end with ``EXT-X-ENDLIST`` at the next refresh."""

    @property
    def decided(self) -> bool:
        """Whether the session's renditions are known (its first ffmpeg run started)."""
        return self._hub is not None

    @property
    def produced(self) -> tuple[str, ...]:
        """The renditions the session produces, ``source`` first (empty until decided)."""
        if not self.decided:
            return ()
        return (SOURCE, *(rung.name for rung, _ in self.rungs))

    async def decide(self, hub: StreamHub) -> None:
        """Fix the session's rungs from what the hub knows of the publish (first call only;
        waits, bounded, for the picture size: :func:`workers.rung_decision.decide_rungs`)."""
        if self._hub is not None:
            return
        rungs = await decide_rungs(self._requested, hub)
        if self._hub is not None:
            return
        self._hub = hub
        tracks, video = hub.tracks, hub.stats.video
        has_video = video is not None and (tracks is None or tracks.has_video)
        height = video.height if video is not None else None
        skipped = [n for n in self._requested[1:] if n not in {r.name for r in rungs}]
        if skipped:
            log.info(
                "stream %s: renditions %s not produced (source %sp%s)",
                hub.stream_id,
                ", ".join(skipped),
                height or "?",
                "" if has_video else ", no video",
            )
        if not rungs:
            return
        self.source.name = f"{SOURCE}.m3u8"
        directory, size = self.source.directory, self.source.list_size
        self.rungs = tuple(
            (
                rung,
                LivePlaylist(
                    directory,
                    list_size=size,
                    segment_seconds=self._segment_seconds,
                    name=f"{rung.name}.m3u8",
                ),
            )
            for rung in rungs
        )

    def _private(self, run_tag: str, rung: Rung | None) -> Path:
        suffix = f"-{rung.name}" if rung is not None else ""
        return self.source.directory / f".ffmpeg-{run_tag}{suffix}.m3u8"

    def argv(self, ffmpeg: str, run_tag: str) -> list[str]:
        """ffmpeg's command for one run of the session."""
        directory = self.source.directory
        source_pattern = str(directory / f"{run_tag}-%d.ts")
        source_private = str(self._private(run_tag, None))
        if not self.rungs:
            return hls_argv(
                ffmpeg,
                segment_seconds=self._segment_seconds,
                segment_pattern=source_pattern,
                playlist_path=source_private,
            )
        return ladder_hls_argv(
            ffmpeg,
            segment_seconds=self._segment_seconds,
            source_pattern=source_pattern,
            source_playlist=source_private,
            rungs=[
                RungOutput(
                    rung,
                    str(directory / f"{run_tag}-{rung.name}-%d.ts"),
                    str(self._private(run_tag, rung)),
                )
                for rung, _ in self.rungs
            ],
        )

    def drop_top(self) -> str | None:
        """Stop listing the top rung (the next ffmpeg run leaves it out; its playlist ends);
        returns its name, ``None`` when no rung is left to drop."""
        if not self.rungs:
            return None
        (rung, playlist), self.rungs = self.rungs[0], self.rungs[1:]
        self.dropped.append(rung.name)
        self._retiring.append(playlist)
        self._listed = None  # index.m3u8 is written again without it
        return rung.name

    def mark_discontinuity(self) -> None:
        """The next segment of every rendition starts a new encoding."""
        self.source.mark_discontinuity()
        for _, playlist in self.rungs:
            playlist.mark_discontinuity()

    async def refresh(
        self, run_tag: str, *, timeout: float | None = None, last: bool = False
    ) -> int:
        """Take what ffmpeg listed for every rendition of run ``run_tag`` and write the changed
        playlists; returns how many segments the source got (the output's progress)."""
        added = await self.source.refresh(self._private(run_tag, None), timeout=timeout, last=last)
        for rung, playlist in self.rungs:
            await playlist.refresh(self._private(run_tag, rung), timeout=timeout, last=last)
        while self._retiring:
            await self._retiring.pop().close(timeout=timeout)
        if self.rungs or self.dropped:
            await self._list_variants(timeout)
        return added

    async def close(self, *, timeout: float | None = None) -> None:
        """End every rendition's playlist (``EXT-X-ENDLIST``)."""
        await self.source.close(timeout=timeout)
        for _, playlist in self.rungs:
            await playlist.close(timeout=timeout)
        while self._retiring:
            await self._retiring.pop().close(timeout=timeout)

    async def _list_variants(self, timeout: float | None) -> None:
        """Rewrite ``index.m3u8`` when any rendition got a segment (bandwidths are measured)."""
        listed = self.source.segments_total + sum(p.segments_total for _, p in self.rungs)
        if listed == self._listed or not self._ready():
            return
        self._listed = listed
        pending = self._variants()  # on the loop: the windows and the hub's stats as of now
        work = asyncio.ensure_future(asyncio.to_thread(self._write_multivariant, pending))
        done, _ = await asyncio.wait({work}, timeout=timeout)
        if not done:
            name, seconds = self.source.directory.name, timeout or 0.0
            log.warning("%s: writing index.m3u8 not done after %.1f s", name, seconds)

    def _ready(self) -> bool:
        if self.source.segments_total == 0:
            return False
        every_rung = all(p.segments_total for _, p in self.rungs)
        return every_rung or self.source.segments_total >= 2

    def _write_multivariant(self, pending: list[tuple[Variant, Path, list[Segment]]]) -> None:
        """Measure the windows' segments and write ``index.m3u8`` if it changed (worker
        thread; a failure is logged and the next segment tries again)."""
        try:
            variants = [
                replace(variant, bandwidth=peak, average_bandwidth=average)
                for variant, directory, window in pending
                for peak, average in [_bandwidth(directory, window)]
            ]
            text = render_multivariant(variants)
            if text != self._master:
                write_atomically(self.source.directory / PLAYLIST_NAME, text)
                self._master = text
        except OSError as exc:
            self._listed = None
            log.warning("could not write %s: %s", self.source.directory / PLAYLIST_NAME, exc)

    def _variants(self) -> list[tuple[Variant, Path, list[Segment]]]:
        """Each variant to list (bandwidths still 0) with its directory and window."""
        assert self._hub is not None
        stats, tracks = self._hub.stats, self._hub.tracks
        video, audio = stats.video, stats.audio
        has_audio = audio is not None and (tracks is None or tracks.has_audio)
        audio_codec = audio_codec_string(audio) if has_audio else None
        fps = video.fps if video is not None else None
        source_codecs = join_codecs(
            video.codec_string if video else None, audio_codec, has_audio=has_audio
        )
        source = Variant(self.source.name, 0, 0, source_resolution(video), source_codecs, fps)
        variants = [(source, self.source.directory, list(self.source.window))]
        for rung, playlist in self.rungs:
            if not playlist.segments_total:
                continue
            codecs = join_codecs(rung_video_codec_string(rung), audio_codec, has_audio=has_audio)
            variant = Variant(playlist.name, 0, 0, rung_resolution(rung, video), codecs, fps)
            variants.append((variant, playlist.directory, list(playlist.window)))
        return variants


def _bandwidth(directory: Path, window: list[Segment]) -> tuple[int, int]:
    """Peak and average bit rate of the segments of ``window`` still on disk."""
    measured = []
    for segment in window:
        try:
            size = (directory / segment.name).stat().st_size
        except OSError:
            continue
        measured.append((size, segment.duration))
    return segment_bandwidth(measured)
