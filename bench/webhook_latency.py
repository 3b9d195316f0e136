"""Webhook delivery latency on loopback: from the commit that queues an event to the receiver
having the request, for events one at a time and for a burst.

    python -m bench.webhook_latency [--events 50] [--database-url URL]

Starts the real app (SQLite in a temporary directory unless ``--database-url`` is given) and an
aiohttp receiver on 127.0.0.1, and prints the median, p95 and max in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from aiohttp import web

from api import queries
from api.app import create_app
from api.keys import DB_SESSIONMAKER
from api.models import Webhook, new_object_id, utc_now
from api.webhooks import outbox
from config import Secret, Settings


async def start_receiver(arrivals: dict[str, float]) -> tuple[web.AppRunner, str]:
    """A receiver recording when each event id arrived."""

    async def receive(request: web.Request) -> web.Response:
        arrivals[json.loads(await request.read())["id"]] = time.perf_counter()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/hook"


async def subscribe(app: web.Application, url: str) -> str:
    """An account with one webhook for everything; returns the account id."""
    async with app[DB_SESSIONMAKER]() as session, session.begin():
        account = await queries.create_account(session, "bench")
        session.add(
            Webhook(
                id=new_object_id(),
                account_id=account.id,
                url=url,
                events=["*"],
                secret="whsec_bench",
                created_at=utc_now(),
            )
        )
    return account.id


async def queue(app: web.Application, account_id: str) -> tuple[str, float]:
    """Queue one event; returns its id and when its transaction committed."""
    async with app[DB_SESSIONMAKER]() as session, session.begin():
        event_id = await outbox.enqueue(
            session, account_id=account_id, event_type="livestream.started", data={"n": 1}
        )
    assert event_id is not None
    return event_id, time.perf_counter()


async def wait_for(arrivals: dict[str, float], event_ids: list[str]) -> None:
    """Until every one of ``event_ids`` arrived (10 s at most)."""
    deadline = time.monotonic() + 10
    while not all(e in arrivals for e in event_ids):
        if time.monotonic() > deadline:
            raise TimeoutError("events not delivered within 10 s")
        await asyncio.sleep(0.001)


def summary(name: str, latencies: list[float]) -> str:
    """Median, p95 and max in ms."""
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[max(0, round(len(ms) * 0.95) - 1)]
    return (
        f"{name}: n={len(ms)} median={statistics.median(ms):.1f} ms "
        f"p95={p95:.1f} ms max={ms[-1]:.1f} ms"
    )


async def measure(events: int, database_url: str | None, data_dir: Path) -> None:
    """Run both measurements and print them."""
    settings = Settings(
        data_dir=data_dir,
        database_url=Secret(database_url or f"sqlite+aiosqlite:///{data_dir}/bench.db"),
        http_port=0,
        rtmp_port=0,
        metrics_port=-1,
        allow_private_targets=True,
    )
    arrivals: dict[str, float] = {}
    receiver, url = await start_receiver(arrivals)
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    try:
        account_id = await subscribe(runner.app, url)
        one_by_one = []
        for _ in range(events):
            event_id, committed = await queue(runner.app, account_id)
            await wait_for(arrivals, [event_id])
            one_by_one.append(arrivals[event_id] - committed)
        burst = [await queue(runner.app, account_id) for _ in range(events)]
        await wait_for(arrivals, [event_id for event_id, _ in burst])
        print(summary("one at a time", one_by_one))
        print(summary("burst", [arrivals[e] - committed for e, committed in burst]))
    finally:
        await runner.cleanup()
        await receiver.cleanup()


def main() -> None:
    """Parse the arguments and measure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        asyncio.run(measure(args.events, args.database_url, Path(data_dir)))


if __name__ == "__main__":
    main()
