"""Running a node until it is stopped: ``liverelay serve``.

Not :func:`aiohttp.web.run_app`, whose SIGTERM closes the HTTP listener first: here SIGTERM
(or ``liverelay drain``) drains the node while HTTP still answers, so that ``/readyz`` says
``draining`` and the API keeps working until the live sessions have ended
(:mod:`api.live.drain`). Then, as after SIGINT (which stops at once, the sessions ending with
``shutdown``), the HTTP listener closes and the app's contexts stop in reverse order.
SIGHUP reloads the RTMPS certificate (:mod:`ingest.tls`); nothing live is touched.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from api.access_log import runner_options
from api.keys import DRAIN, RTMPS_CERTIFICATE
from api.live.drain import HTTP_SHUTDOWN_SECONDS, begin_drain
from config import Settings

log = logging.getLogger(__name__)


def run(app: web.Application, settings: Settings) -> None:
    """Serve ``app`` on ``settings.http_host``/``http_port`` until SIGINT, or until the drain
    that SIGTERM or ``liverelay drain`` begins is over; then stop it."""
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(_serve(app, settings))
    finally:
        # As run_app: cancel what is left, but do not wait for worker threads (a hung disk).
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _serve(app: web.Application, settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    runner = web.AppRunner(
        app, handle_signals=False, shutdown_timeout=HTTP_SHUTDOWN_SECONDS, **runner_options()
    )
    interrupted = asyncio.Event()
    started = False

    def terminate() -> None:
        if started:
            begin_drain(app, "SIGTERM")
        else:  # nothing is live yet: stop once started
            log.warning("SIGTERM while starting: stopping once started")
            interrupted.set()

    loop.add_signal_handler(signal.SIGTERM, terminate)
    loop.add_signal_handler(signal.SIGINT, _interrupt, interrupted)
    loop.add_signal_handler(signal.SIGHUP, reload_certificates, app)
    try:
        await runner.setup()
        await web.TCPSite(runner, settings.http_host, settings.http_port).start()
        started = True
        stops = [
            asyncio.create_task(interrupted.wait()),
            asyncio.create_task(app[DRAIN].finished.wait()),
        ]
        try:
            await asyncio.wait(stops, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in stops:
                task.cancel()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)
        log.info("stopping")
        await runner.cleanup()


def _interrupt(interrupted: asyncio.Event) -> None:
    log.warning("SIGINT: stopping now (live sessions end with 'shutdown')")
    interrupted.set()


def reload_certificates(app: web.Application) -> None:
    """SIGHUP: new RTMPS handshakes use the certificate and key files as they are now (a
    failed reload is logged and keeps the previous certificate); open connections are kept."""
    certificate = app.get(RTMPS_CERTIFICATE)
    if certificate is None:
        log.info("SIGHUP: nothing to reload (no RTMPS ingest)")
        return
    certificate.reload()
