"""SQLite under concurrent writers: API creates, changes and reads next to publishes starting
at once (session rows and events), with the node's background writers running.

    python -m bench.sqlite_contention [--streams 40] [--rounds 3]

Starts the real app in-process on a SQLite file in a temporary directory. Each round creates
``--streams`` streams at once, then admits a publisher to every one at once (a node restart:
every encoder reconnects) while a PATCH and a GET of each run alongside. Prints the failures
(non-2xx answers, refused publishes, "database is locked" in the logs) and the operations per
second. Every phase is a fixed number of operations; nothing loops unbounded.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from api import queries
from api.app import create_app
from api.auth import issue_token
from api.keys import DB_SESSIONMAKER, PATHS
from api.models import LiveStream
from config import Settings
from workers.live_path import LivePath

PHASE_BOUND = 60.0
"""Seconds a round's publishes and changes may take before the run stops with every task's
stack printed."""


class LockedCounter(logging.Handler):
    """Counts log records that mention a locked database."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage() + (
            logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
        )
        if "database is locked" in text:
            self.count += 1


@dataclass
class Publisher:
    client_address: str
    path: LivePath | None = None
    ended: list[str] = field(default_factory=list)

    def disconnect(self, reason: Any) -> None:
        self.ended.append(str(reason))


async def run(streams: int, rounds: int) -> dict[str, float]:
    locked = LockedCounter()
    logging.getLogger().addHandler(locked)
    failures: dict[str, int] = {}
    operations = 0
    with tempfile.TemporaryDirectory(prefix="liverelay-contention-") as data_dir:
        settings = Settings(
            data_dir=Path(data_dir), http_port=0, rtmp_port=0, metrics_port=0, retention_days=0
        )
        client = TestClient(TestServer(create_app(settings)))
        await client.start_server()
        try:
            app = client.app
            async with app[DB_SESSIONMAKER]() as session, session.begin():
                account = await queries.create_account(session, "bench")
            headers = {"Authorization": issue_token(account.apikey, account.secret, 3600)}

            def failed(kind: str) -> None:
                failures[kind] = failures.get(kind, 0) + 1

            async def create(n: int) -> str | None:
                response = await client.post(
                    "/v1/livestreams", json={"name": f"s{n}"}, headers=headers
                )
                if response.status != 201:
                    failed(f"create {response.status}")
                    return None
                return str((await response.json())["id"])

            async def publish(stream_id: str, n: int) -> None:
                async with app[DB_SESSIONMAKER]() as session:
                    row = await session.get(LiveStream, stream_id)
                assert row is not None
                try:
                    await app[PATHS].admit(row.stream_key, Publisher(f"198.51.100.1:{n}"))
                except Exception as exc:  # counted, not raised: the run goes on
                    failed(f"publish {type(exc).__name__}")

            async def change(stream_id: str) -> None:
                url = f"/v1/livestreams/{stream_id}"
                response = await client.patch(url, json={"name": "x"}, headers=headers)
                if response.status != 200:
                    failed(f"patch {response.status}")
                response = await client.get(url, headers=headers)
                if response.status != 200:
                    failed(f"get {response.status}")

            started = time.perf_counter()
            for round_ in range(rounds):
                ids = await asyncio.gather(*(create(round_ * streams + n) for n in range(streams)))
                created = [i for i in ids if i is not None]
                phase = asyncio.gather(
                    *(publish(i, n) for n, i in enumerate(created)),
                    *(change(i) for i in created),
                )
                try:
                    await asyncio.wait_for(asyncio.shield(phase), PHASE_BOUND)
                except TimeoutError:
                    for task in asyncio.all_tasks():
                        task.print_stack(limit=12)
                    raise
                operations += streams * 4
            elapsed = time.perf_counter() - started
        finally:
            await client.close()
    logging.getLogger().removeHandler(locked)
    result = {
        "operations": operations,
        "failures": sum(failures.values()),
        "locked_logged": locked.count,
        "per_second": operations / elapsed,
        **{f"failed {k}": v for k, v in failures.items()},
    }
    for task in asyncio.all_tasks() - {asyncio.current_task()}:
        print("left over:", task, flush=True)
    for key, value in result.items():  # printed before the loop shuts down
        print(f"{key}: {value:.1f}" if isinstance(value, float) else f"{key}: {value}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(run(args.streams, args.rounds))


if __name__ == "__main__":
    main()
