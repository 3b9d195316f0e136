"""Fixtures of the object-storage tests: a real S3 server (SeaweedFS and moto), storages on it
under a key prefix of their own test, and a direct view of the bucket."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.s3_support import FAST_RETRIES, Bucket, S3Server, StorageFactory
from workers.object_storage import S3RecordingStorage
from workers.s3_options import S3Options


@pytest.fixture(params=["seaweedfs", "moto_s3"])
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    server: S3Server = request.getfixturevalue(request.param)
    return server


@pytest.fixture
async def make_storage(s3_server: S3Server, tmp_path: Path) -> AsyncIterator[StorageFactory]:
    """Storages on the test server, each under a fresh key prefix of its own test."""
    prefix = f"t-{secrets.token_hex(4)}/"
    opened: list[S3RecordingStorage] = []

    def make(
        endpoint: str | None = None,
        backlog_bytes: int = 10**9,
        node: str = "a",
        page_size: int = 1000,
    ) -> S3RecordingStorage:
        options = S3Options(
            bucket=s3_server.bucket,
            prefix=prefix,
            endpoint_url=endpoint or s3_server.endpoint,
            access_key_id=s3_server.access_key,
            secret_access_key=s3_server.secret_key,
            backlog_bytes=backlog_bytes,
            backoff=FAST_RETRIES,
            connect_timeout=1.0,
            read_timeout=5.0,
            page_size=page_size,
        )
        storage = S3RecordingStorage(options, tmp_path / f"backlog-{node}")
        opened.append(storage)
        return storage

    try:
        yield make
    finally:
        for storage in opened:
            await storage.close()


@pytest.fixture
async def storage(make_storage: StorageFactory) -> S3RecordingStorage:
    opened = make_storage()
    await opened.open()
    return opened


@pytest.fixture
def bucket(s3_server: S3Server) -> Bucket:
    return Bucket(s3_server)
