"""CPU of the API's middleware (:func:`api.middlewares.request_middleware`: metrics, request id,
errors, authentication of ``/v1``), per request, on a live playback path: the middleware
wrapping a handler that returns at once, against the handler alone (``time.process_time``, the
median of several rounds).

    python -m bench.middleware_cost [--requests 5000] [--rounds 5]

Run by hand; in process, no sockets: the request is aiohttp's own test request for
``GET /live/<id>/index.m3u8``, routed through a real app's router.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from api.keys import METRICS, REQUEST_IDS
from api.metrics.registry import Metrics
from api.middlewares import RequestIds, request_middleware

PATH = "/live/0123456789abcdef01234567/index.m3u8"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _handler(request: web.Request) -> web.StreamResponse:
    return web.Response(body=b"#EXTM3U\n")


def _app() -> web.Application:
    app = web.Application()
    app[METRICS] = Metrics()
    app[REQUEST_IDS] = RequestIds()
    app.router.add_get("/live/{id}/index.m3u8", _handler)
    return app


async def _request(app: web.Application) -> web.Request:
    request = make_mocked_request("GET", PATH, app=app)
    match = await app.router.resolve(request)
    match.add_app(app)
    request._match_info = match
    return request


def _chain(middlewares: list, handler: Handler) -> Handler:
    for middleware in reversed(middlewares):

        def bound(request: web.Request, m=middleware, h=handler) -> Awaitable[web.StreamResponse]:
            return m(request, h)

        handler = bound
    return handler


async def _cost_us(app: web.Application, middlewares: list, requests: int) -> float:
    """CPU µs per call of ``middlewares`` around the handler, fresh request each call."""
    chain = _chain(middlewares, _handler)
    prepared = [await _request(app) for _ in range(requests)]
    started = time.process_time()
    for request in prepared:
        await chain(request)
    return (time.process_time() - started) / requests * 1e6


async def main(args: argparse.Namespace) -> dict[str, float]:
    app = _app()
    cases = {
        "handler alone": [],
        "request middleware": [request_middleware],
    }
    rounds: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, middlewares in cases.items():
            rounds[name].append(await _cost_us(app, middlewares, args.requests))
    return {name: statistics.median(values) for name, values in rounds.items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.middleware_cost", description=__doc__)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    result = asyncio.run(main(parser.parse_args()))
    alone = result["handler alone"]
    for name, us in result.items():
        print(f"{name:22} {us:6.2f} µs   (+{us - alone:5.2f})")
