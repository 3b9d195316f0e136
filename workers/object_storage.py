"""Recordings in S3-compatible object storage (AWS S3, SeaweedFS, MinIO, Ceph...).

Objects are ``<prefix><recording id>/<segment>`` and ``<prefix><recording id>/index.m3u8``.
Nothing on the live path waits for the network: :meth:`S3RecordingStorage.add_segment`
hard-links the segment into a local backlog directory and returns, and one upload task per
recording sends, in order, every waiting segment and then the newest playlist, so a stored
playlist never lists a segment that is not stored yet. While the server is unreachable the
segments wait on disk and the task retries with capped exponential backoff; when the bytes
waiting in all recordings would pass ``backlog_bytes`` the recording being added to fails
(:class:`~workers.storage.RecordingFailed`) and its waiting segments are dropped. The backlog
directory also keeps the newest playlist not stored yet, so what a stopped or killed process
left there is sent by the next :meth:`~S3RecordingStorage.open` (:mod:`workers.upload_backlog`).

The playlist is written with conditional requests: ``If-None-Match: *`` for the first write of
a recording, ``If-Match: <ETag of our last write>`` afterwards. Another writer's change (another
node that took the recording over) makes our write fail with 412 instead of silently replacing
theirs, and we stop writing it, until :meth:`~S3RecordingStorage.inspect` reads it anew. A
server that ignores these headers gives no such protection (see ``docs/operations.md``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from aiobotocore.session import AioSession
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from config import SettingsError
from workers.m3u8 import MEDIA_SUFFIXES, PLAYLIST_NAME
from workers.s3_options import S3Options, describe, error_code, status
from workers.s3_requests import (
    delete_keys,
    get_text,
    list_objects,
    put_file,
    vanished_is_skipped,
)
from workers.storage import RecordingFailed, StorageUnavailable, StoredRecording, link_or_copy
from workers.upload_backlog import (
    PENDING_PLAYLIST,
    LeftBehind,
    left_behind,
    playlist_stored,
    write_text,
)
from workers.upload_state import PlaylistConflict, RecordingUploads

log = logging.getLogger(__name__)

_PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
_TRANSIENT = (BotoCoreError, ClientError, OSError, TimeoutError)
"""Failures an upload retries (a conflict on the playlist is not one of them)."""


class S3RecordingStorage:
    """:class:`~workers.storage.RecordingStorage` in a bucket, which every node reaches. Use
    ``async with`` (or :meth:`open` and :meth:`close`): it owns the client and upload tasks."""

    shared = True

    def __init__(self, options: S3Options, backlog_dir: Path, *, rng: random.Random | None = None):
        self.options = options
        self.backlog_dir = backlog_dir
        self._rng = rng or random.Random()
        self._uploads: dict[str, RecordingUploads] = {}
        self._waiting_bytes = 0
        self.upload_failures = 0
        """Upload requests that failed (each retried later), since start."""
        self.recordings_failed = 0
        """Recordings this storage gave up on (backlog bound, conflict), since start."""
        self._resume_until = 0.0
        self._stack = AsyncExitStack()
        self._client: Any = None

    async def __aenter__(self) -> S3RecordingStorage:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Create the client. Raises :class:`~config.SettingsError` when no credentials are
        found (the server itself is not contacted: it may well be down at start-up)."""
        opts = self.options
        session = AioSession()
        if opts.access_key_id is not None:
            session.set_credentials(opts.access_key_id, opts.secret_access_key or "")
        if await session.get_credentials() is None:
            raise SettingsError(
                "LIVERELAY_STORAGE_URL is s3:// but no credentials were found: set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or another source of botocore's "
                "credential chain)"
            )
        config = Config(
            connect_timeout=opts.connect_timeout,
            read_timeout=opts.read_timeout,
            signature_version="s3v4",  # presigned URLs too (botocore would sign them v2)
            retries={"max_attempts": 1, "mode": "standard"},  # the upload tasks retry
            s3={"addressing_style": "path" if opts.endpoint_url else "auto"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client = await self._stack.enter_async_context(
            session.create_client(
                "s3", endpoint_url=opts.endpoint_url, region_name=opts.region, config=config
            )
        )
        await asyncio.to_thread(self.backlog_dir.mkdir, parents=True, exist_ok=True)
        self._resume_until = asyncio.get_running_loop().time() + opts.resume_seconds
        for left in await asyncio.to_thread(left_behind, self.backlog_dir):
            self._resume(left)

    def _resume(self, left: LeftBehind) -> None:
        """Send what a previous run left in the backlog, as it would have."""
        uploads = RecordingUploads(left.recording_id, resumed=True)
        uploads.etag = left.etag
        for waiting in left.segments:
            uploads.add_segment(waiting.path, waiting.size)
            self._waiting_bytes += waiting.size
        if left.playlist is not None:
            uploads.set_playlist(left.playlist)
        log.info("recording %s: resuming %d uploads", left.recording_id, len(left.segments))
        uploads.start(self._upload_loop(uploads))
        self._uploads[left.recording_id] = uploads

    async def close(self, drain_seconds: float = 0.0) -> None:
        """Give waiting uploads up to ``drain_seconds`` to finish, then stop the upload tasks
        (what still waits stays in the backlog directory, and the next :meth:`open` sends it)
        and close the client."""
        if self._uploads and drain_seconds > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_seconds):
                    await asyncio.gather(*(u.wait_idle() for u in self._uploads.values()))
        for uploads in list(self._uploads.values()):
            if not uploads.idle:
                where = self.backlog_dir / uploads.recording_id
                log.warning("recording %s: stopping with uploads waiting in %s", where.name, where)
            await uploads.stop()
        self._uploads.clear()
        await self._stack.aclose()

    # -- RecordingStorage ---------------------------------------------------------------

    async def add_segment(self, recording_id: str, source: Path) -> int:
        """Keep ``source`` in the backlog and queue its upload; return its size at once."""
        uploads = self._recording(recording_id)
        uploads.raise_if_failed()
        size = await asyncio.to_thread(link_or_copy, self.backlog_dir / recording_id, source)
        spooled = self.backlog_dir / recording_id / source.name
        if self._waiting_bytes + size > self.options.backlog_bytes:
            await asyncio.to_thread(spooled.unlink, missing_ok=True)
            reason = (
                f"object storage is unreachable or too slow: {self._waiting_bytes} bytes of "
                f"segments already wait for their upload and {source.name} ({size} bytes) "
                f"would pass the bound of {self.options.backlog_bytes} "
                "(LIVERELAY_UPLOAD_BACKLOG_MB)"
            )
            await self._fail(uploads, reason)
            raise RecordingFailed(reason)
        self._waiting_bytes += size
        uploads.add_segment(spooled, size)
        return size

    async def write_playlist(self, recording_id: str, text: str) -> None:
        """Queue ``text`` as the playlist, written once every segment before it is stored."""
        uploads = self._recording(recording_id)
        uploads.raise_if_failed()
        async with uploads.files:  # on disk before it can be stored, and replaced in order
            uploads.raise_if_failed()
            await asyncio.to_thread(
                write_text, self.backlog_dir / recording_id / PENDING_PLAYLIST, text
            )
            uploads.set_playlist(text)

    async def inspect(self, recording_id: str) -> StoredRecording:
        """The stored playlist (remembering its ETag for the next conditional write) and the
        sizes of the stored segments."""
        prefix = self._key(recording_id, "")
        await self._resumed_sent(recording_id)
        try:
            current = await self._get_playlist(recording_id)
            sizes: dict[str, int] = {}
            async for item in list_objects(self._client, self.options, prefix):
                name = item["Key"][len(prefix) :]
                if name.endswith(MEDIA_SUFFIXES) and "/" not in name:
                    sizes[name] = int(item["Size"])
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable(f"could not inspect recording {recording_id}: {exc}") from exc
        if current is None:
            return StoredRecording(None, sizes, None)
        text, etag, modified_at = current
        self._recording(recording_id).etag = etag
        return StoredRecording(text, sizes, modified_at)

    async def remove_segments(self, recording_id: str, names: list[str]) -> None:
        """Delete the named segment objects."""
        keys = [self._key(recording_id, Path(n).name) for n in names]
        await delete_keys(self._client, self.options, keys)

    async def delete(self, recording_id: str) -> None:
        """Stop the recording's uploads, drop its backlog and delete every object under its
        prefix (listed page by page)."""
        await self._delete_all(recording_id)

    async def _delete_all(self, recording_id: str) -> int:
        prefix = self._key(recording_id, "")
        uploads = self._uploads.pop(recording_id, None)
        if uploads is not None:
            await uploads.stop()
            self._waiting_bytes -= uploads.drop_waiting()
        await asyncio.to_thread(shutil.rmtree, self.backlog_dir / recording_id, True)
        try:
            keys = [item["Key"] async for item in list_objects(self._client, self.options, prefix)]
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable(f"could not list recording {recording_id}: {exc}") from exc
        await delete_keys(self._client, self.options, keys)
        return len(keys)

    # -- beyond the interface -------------------------------------------------------------

    async def withdraw(self, recording_id: str) -> bool | None:
        """Delete the recording now (what account and stream deletion call); ``True`` if it
        had objects, ``None`` if not."""
        return True if await self._delete_all(recording_id) else None

    async def empty_trash(self) -> None:
        """Nothing to do: :meth:`withdraw` deletes at once."""

    async def read_playlist(self, recording_id: str) -> bytes | None:
        """The stored playlist, ``None`` if there is none."""
        try:
            current = await self._get_playlist(recording_id)
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable(f"could not read recording {recording_id}: {exc}") from exc
        return None if current is None else current[0].encode("utf-8")

    async def presigned_url(self, recording_id: str, name: str, expires_in: int = 300) -> str:
        """A URL that GETs the object ``name`` of the recording without credentials for
        ``expires_in`` seconds (signed locally, no request)."""
        url: str = await self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.options.bucket, "Key": self._key(recording_id, name)},
            ExpiresIn=expires_in,
        )
        return url

    async def flush(self, recording_id: str) -> None:
        """Wait until everything queued for the recording is stored; raises
        :class:`~workers.storage.RecordingFailed` if the recording failed, and
        :class:`~workers.storage.StorageUnavailable` if the uploads were stopped first."""
        uploads = self._uploads.get(recording_id)
        if uploads is not None:
            await uploads.settle(None)

    async def probe(self) -> None:
        """One cheap request (``HEAD`` on the bucket); raises when it fails."""
        await self._client.head_bucket(Bucket=self.options.bucket)

    @property
    def waiting_segments(self) -> int:
        """Segments waiting for their upload, all recordings together."""
        return sum(uploads.waiting_segments for uploads in self._uploads.values())

    @property
    def waiting_bytes(self) -> int:
        """Bytes of segments waiting for their upload, all recordings together."""
        return self._waiting_bytes

    # -- internals --------------------------------------------------------------------

    def _key(self, recording_id: str, name: str) -> str:
        """The object key of ``name`` in the recording (the id checked as on local disk)."""
        if not recording_id or "/" in recording_id or recording_id.startswith("."):
            raise ValueError(f"invalid recording id {recording_id!r}")
        return f"{self.options.prefix}{recording_id}/{name}"

    def _recording(self, recording_id: str) -> RecordingUploads:
        self._key(recording_id, "")  # checks the id
        uploads = self._uploads.get(recording_id)
        if uploads is None:
            uploads = RecordingUploads(recording_id)
            uploads.start(self._upload_loop(uploads))
            self._uploads[recording_id] = uploads
        return uploads

    async def _resumed_sent(self, recording_id: str) -> None:
        """Before the bucket is read: wait for the uploads a previous run left (until
        :attr:`S3Options.resume_seconds` after open at most), forget a recording given up here
        (another node took it over), so that whoever reads it writes it anew."""
        uploads = self._uploads.get(recording_id)
        if uploads is not None and uploads.failure is not None:
            await uploads.stop()
            self._forget(uploads)
        elif uploads is not None and uploads.resumed:
            await uploads.settle(self._resume_until - asyncio.get_running_loop().time())

    def _forget(self, uploads: RecordingUploads) -> None:
        """The recording is closed and fully stored: drop its entry (a later write starts
        from what :meth:`inspect` reads)."""
        if self._uploads.get(uploads.recording_id) is uploads:
            del self._uploads[uploads.recording_id]
        uploads.task_ended()

    async def _fail(self, uploads: RecordingUploads, reason: str) -> None:
        log.error("recording %s failed: %s", uploads.recording_id, reason)
        self.recordings_failed += 1
        uploads.fail(reason)
        self._waiting_bytes -= uploads.drop_waiting()
        async with uploads.files:
            await asyncio.to_thread(shutil.rmtree, self.backlog_dir / uploads.recording_id, True)

    async def _upload_loop(self, uploads: RecordingUploads) -> None:
        """Send the recording's segments in order, then its newest playlist; retry failures
        with backoff; stop at a playlist conflict."""
        failures = 0
        while True:
            await uploads.wait_for_work()
            try:
                segment = uploads.next_segment()
                if segment is not None:
                    with vanished_is_skipped(uploads.recording_id, segment.path):
                        key = self._key(uploads.recording_id, segment.path.name)
                        await put_file(self._client, self.options.bucket, key, segment.path)
                    uploads.segment_done()
                    self._waiting_bytes -= segment.size
                    await asyncio.to_thread(segment.path.unlink, missing_ok=True)
                else:
                    await self._put_playlist(uploads)
                    await self._playlist_stored(uploads)
                    if uploads.idle and uploads.closed:
                        await asyncio.to_thread(
                            shutil.rmtree, self.backlog_dir / uploads.recording_id, True
                        )
                        self._forget(uploads)
                        return
            except PlaylistConflict as exc:
                await self._fail(uploads, str(exc))
                return
            except _TRANSIENT as exc:
                failures += 1
                self.upload_failures += 1
                delay = self.options.backoff.delay(failures, self._rng)
                log.warning(
                    "recording %s: upload failed (%s); retry %d in %.1f s",
                    uploads.recording_id,
                    describe(exc),
                    failures,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            failures = 0

    async def _playlist_stored(self, uploads: RecordingUploads) -> None:
        """Keep the backlog directory in step with a stored playlist (see
        :func:`~workers.upload_backlog.playlist_stored`)."""
        if uploads.etag is None:
            return
        async with uploads.files:
            directory = self.backlog_dir / uploads.recording_id
            await asyncio.to_thread(playlist_stored, directory, uploads.etag, uploads.playlist)

    async def _put_playlist(self, uploads: RecordingUploads) -> None:
        text = uploads.playlist
        assert text is not None
        condition = {"IfMatch": uploads.etag} if uploads.etag else {"IfNoneMatch": "*"}
        uploads.attempted(text)
        try:
            answer = await self._client.put_object(
                Bucket=self.options.bucket,
                Key=self._key(uploads.recording_id, PLAYLIST_NAME),
                Body=text.encode("utf-8"),
                ContentType=_PLAYLIST_TYPE,
                CacheControl="no-cache",
                **condition,
            )
        except ClientError as exc:
            missing = error_code(exc) == "NoSuchKey" and "IfMatch" in condition
            if status(exc) != 412 and not missing:
                raise
            current = await self._get_playlist(uploads.recording_id)
            # Raises PlaylistConflict unless what is stored is our own earlier write (its
            # answer lost); then we know its ETag and write again.
            uploads.precondition_failed(None if current is None else current[:2])
            return
        uploads.playlist_written(text, answer["ETag"])

    async def _get_playlist(self, recording_id: str) -> tuple[str, str, float] | None:
        """``(text, ETag, modified at)`` of the stored playlist, ``None`` when there is none."""
        key = self._key(recording_id, PLAYLIST_NAME)
        return await get_text(self._client, self.options.bucket, key)
