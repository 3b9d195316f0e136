"""The plain object-storage requests :mod:`workers.object_storage` is built on: read a text
object, list a prefix page by page, delete keys in batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from workers.s3_options import S3Options, status
from workers.storage import StorageUnavailable

log = logging.getLogger(__name__)

_CONTENT_TYPES = {".ts": "video/mp2t", ".m4s": "video/iso.segment", ".mp4": "video/mp4"}


async def get_text(client: Any, bucket: str, key: str) -> tuple[str, str, float] | None:
    """``(text, ETag, modified at)`` of the object, ``None`` when there is none."""
    try:
        answer = await client.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if status(exc) == 404:
            return None
        raise
    async with answer["Body"] as body:
        data = await body.read()
    return data.decode("utf-8"), answer["ETag"], answer["LastModified"].timestamp()


async def put_file(client: Any, bucket: str, key: str, path: Path) -> None:
    """Store the file ``path`` (a segment or initialization segment) as ``key``."""
    body = await asyncio.to_thread(path.read_bytes)
    kind = _CONTENT_TYPES.get(path.suffix, "application/octet-stream")
    await client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=kind)


async def list_objects(
    client: Any, options: S3Options, prefix: str
) -> AsyncIterator[dict[str, Any]]:
    """Every object under ``prefix``, listed :attr:`S3Options.page_size` at a time."""
    paginator = client.get_paginator("list_objects_v2")
    pages = paginator.paginate(
        Bucket=options.bucket,
        Prefix=prefix,
        PaginationConfig={"PageSize": options.page_size},
    )
    async for page in pages:
        for item in page.get("Contents", []):
            yield item


async def delete_keys(client: Any, options: S3Options, keys: Iterable[str]) -> None:
    """Delete ``keys``, :attr:`S3Options.page_size` per request; raises
    :class:`StorageUnavailable` on the first failure."""
    pending = list(keys)
    try:
        for start in range(0, len(pending), options.page_size):
            batch = pending[start : start + options.page_size]
            answer = await client.delete_objects(
                Bucket=options.bucket,
                Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
            )
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise StorageUnavailable(
                    f"could not delete {first.get('Key')}: {first.get('Code')} "
                    f"{first.get('Message', '')}".strip()
                )
    except (BotoCoreError, ClientError) as exc:
        raise StorageUnavailable(f"could not delete objects: {exc}") from exc


@contextlib.contextmanager
def vanished_is_skipped(recording_id: str, path: Path) -> Iterator[None]:
    """A backlog file removed behind our back is logged and skipped, not retried forever."""
    try:
        yield
    except FileNotFoundError:
        log.error("recording %s: segment %s vanished from the backlog", recording_id, path)
