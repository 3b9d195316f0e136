"""Draining this node before it stops: ``/readyz`` answers 503 ``draining`` at once (load
balancers stop sending to it), new publishes are refused with ``NetStream.Publish.Failed`` ("the
server is draining: publish again to reach another node"), and every live session's publisher
is told so and disconnected, to reconnect, through the load balancer, to another node. Then the
process stops (:mod:`api.serve`).

On a node that shares its database with others (PostgreSQL), a session whose stream has a
reconnect window and whose recording, if any, is in object storage is **handed over**: its
outputs stop and store what they have (the recording stays open), the session is not ended and
the stream's lease is released, so the node the publisher reaches next continues the same
session and recording (:meth:`workers.live_path.LivePath.finish`). Every other session (SQLite:
a node alone; no window; a recording on this node's disk) ends with ``endReason: "draining"``.

SIGTERM (what Kubernetes, systemd and Docker send) drains, and so does ``liverelay drain``,
which asks the node through its control socket: a Unix socket in a directory of the data
directory that only the node's user may enter (:func:`control_socket`). Nothing on the network,
and no other local user, can drain a node.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from api.keys import DRAIN, PATHS, SETTINGS
from config import Settings
from workers.live_paths import LivePaths

log = logging.getLogger(__name__)

HTTP_SHUTDOWN_SECONDS = 3.0
"""How long HTTP requests still running when the node stops may take to finish."""
STOP_AFTER_DRAIN_SECONDS = 10.0
"""Bound of what the process does after the drain (``LIVERELAY_DRAIN_SECONDS``) before it
exits, the sum of fixed bounds reached only when things hang (the database unreachable,
requests that do not finish): HTTP requests finish (:data:`HTTP_SHUTDOWN_SECONDS`), the
registry row is marked gone (3 s), the streams' leases are released (3 s), the webhook
dispatcher stops (1 s); the listeners and the database close. A supervisor must wait
``LIVERELAY_DRAIN_SECONDS`` plus this."""


def control_socket(settings: Settings) -> Path:
    """Where the node listens for ``liverelay drain``: ``<data_dir>/control/node.sock``."""
    return settings.data_dir / "control" / "node.sock"


class Drain:
    """The drain of this node: whether it began, and when it is over."""

    def __init__(self, bound: float) -> None:
        """``bound``: seconds the live sessions have to end (``LIVERELAY_DRAIN_SECONDS``)."""
        self.bound = bound
        self.draining = False
        """Set at once when the drain begins: ``/readyz`` fails from then on."""
        self.finished = asyncio.Event()
        """Set when every live session ended (or the bound ran out): the node may stop."""
        self._task: asyncio.Task[None] | None = None
        self._on_begin: list[Callable[[], None]] = []

    def on_begin(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the drain begins (e.g. to tell the registry at once)."""
        self._on_begin.append(callback)

    def begin(self, paths: LivePaths, why: str) -> bool:
        """Begin draining (``why`` is logged): refuse publishes and end every live session,
        in the background. ``False`` if the drain had begun already."""
        if self.draining:
            log.info("%s: the node is draining already", why)
            return False
        self.draining = True
        log.warning(
            "%s: draining: /readyz fails, new publishes are refused and %d live sessions are "
            "handed over or end (within %g s); then the node stops",
            why,
            len(paths.paths()),
            self.bound,
        )
        self._task = asyncio.create_task(self._run(paths), name="drain")
        for callback in self._on_begin:
            callback()
        return True

    async def _run(self, paths: LivePaths) -> None:
        live = paths.paths()  # no publish is admitted any more
        try:
            async with asyncio.timeout(self.bound):
                await paths.close("draining")
            handed = sum(path.handed_over for path in live)
            log.info(
                "drained: %d live sessions handed over to the streams' next owners, %d ended",
                handed,
                len(live) - handed,
            )
        except TimeoutError:
            log.warning("the drain took longer than %g s; stopping the rest at once", self.bound)
        except Exception:
            log.exception("the drain failed; stopping")
        finally:
            self.finished.set()


def begin_drain(app: web.Application, why: str) -> bool:
    """Begin draining the node of ``app`` (see :meth:`Drain.begin`)."""
    return app[DRAIN].begin(app[PATHS], why)


async def control_context(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx`` (after media): serve ``POST /drain`` on the control socket. If the
    socket cannot be made (e.g. a path too long for a Unix socket), the node runs without it:
    SIGTERM still drains it."""
    path = control_socket(app[SETTINGS])

    async def drain(request: web.Request) -> web.Response:
        began = begin_drain(app, "liverelay drain")
        return web.json_response({"draining": True, "began": began}, status=202)

    control = web.Application()
    control.router.add_post("/drain", drain)
    runner = web.AppRunner(control, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        try:
            await asyncio.to_thread(_private_directory, path.parent)
            await web.UnixSite(runner, str(path)).start()
        except OSError as exc:
            log.warning(
                "no control socket at %s (%s): liverelay drain cannot reach this node, "
                "SIGTERM drains it",
                path,
                exc.strerror or exc,
            )
        else:
            log.info("control socket at %s (liverelay drain)", path)
        yield
    finally:
        await runner.cleanup()
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.debug("could not remove %s: %s", path, exc)


def _private_directory(directory: Path) -> None:
    """Make ``directory`` (mode 0700: only this user may reach the socket inside)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
