"""A live stream rendered outside a request, as ``GET /v1/livestreams/{id}`` returns it to its
owner but without its keys (:mod:`api.schemas.events`): the ``data`` of webhook events.

It goes through the same serializer as the routes
(:func:`api.schemas.livestreams.live_stream_output`) and reads the same app-level values they do
(public URLs, the bound RTMP port, which streams are live, the relay state of restream targets)
when it renders, not when it is built: it is constructed before the media context has started.
The routes read a stream's live path and its status the same way (:func:`live_path`,
:func:`live_status`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from api.auth import AuthenticatedAccount
from api.keys import PATHS, RTMP_PORT, RTMPS_PORT, SETTINGS
from api.models import Account, LiveSession, LiveStream, Recording
from api.schemas.current_session import CurrentSessionOutput, current_session_output
from api.schemas.events import (
    LiveStreamEventData,
    RecordingEventData,
    RestreamEventData,
    event_stream_fields,
    event_target,
)
from api.schemas.livestreams import (
    LiveStreamOutput,
    StatusLookup,
    live_stream_output,
    recording_output,
)
from api.schemas.sessions import session_output
from workers.events import RestreamState
from workers.live_path import LivePath
from workers.status import SessionStatus, session_status
from workers.supervisor import OutputState, OutputStatus


class StreamView:
    """Renders streams (and the objects events attach to them) for the app ``app``."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    async def load(
        self, session: AsyncSession, stream_id: str
    ) -> tuple[LiveStream, AuthenticatedAccount] | None:
        """Stream ``stream_id`` (also when deleted) with its targets, and its owner."""
        query = (
            select(LiveStream, Account)
            .join(Account, Account.id == LiveStream.account_id)
            .where(LiveStream.id == stream_id)
            .options(selectinload(LiveStream.targets))
        )
        row = (await session.execute(query)).one_or_none()
        if row is None:
            return None
        stream, account = row
        return stream, AuthenticatedAccount(id=account.id, name=account.name, apikey=account.apikey)

    def stream(
        self,
        stream: LiveStream,
        account: AuthenticatedAccount,
        *,
        live: bool | None = None,
        change: RestreamChange | None = None,
    ) -> LiveStreamOutput:
        """The stream object; its live state is read from this node unless ``live`` is False
        (a session that just ended); ``change`` is a restream target's newly reported state."""
        settings = self._app[SETTINGS]
        path, session = self._media_state(stream.id)
        lookup = _relay_status(path)
        return live_stream_output(
            stream,
            account,
            rtmp_base=settings.rtmp_base_url(self._app.get(RTMP_PORT)),
            rtmps_base=settings.rtmps_base_url(self._app.get(RTMPS_PORT)),
            http_base=settings.http_base_url(),
            live=session is not None and live is not False,
            restream_status=change.overlay(lookup) if change is not None else lookup,
            current_session=session if live is not False else None,
        )

    def session_event(
        self, stream: LiveStream, account: AuthenticatedAccount, row: LiveSession
    ) -> dict[str, Any]:
        """``data`` of a ``livestream.*`` event (an ended session is never shown live)."""
        output = self.stream(stream, account, live=False if row.ended_at else None)
        data = LiveStreamEventData(**event_stream_fields(output), session=session_output(row))
        return data.model_dump(by_alias=True)

    def restream_event(
        self,
        stream: LiveStream,
        account: AuthenticatedAccount,
        row: LiveSession,
        change: RestreamChange,
    ) -> dict[str, Any] | None:
        """``data`` of a ``restream.*`` event (``None`` if the target is no longer listed)."""
        output = self.stream(stream, account, change=change)
        target = next((t for t in output.restream if t.target_id == change.target_id), None)
        if target is None:
            return None
        data = RestreamEventData(
            **event_stream_fields(output), session=session_output(row), target=event_target(target)
        )
        return data.model_dump(by_alias=True)

    def recording_event(
        self, stream: LiveStream, account: AuthenticatedAccount, recording: Recording
    ) -> dict[str, Any]:
        """``data`` of a ``recording.*`` event."""
        output = self.stream(stream, account)
        http_base = self._app[SETTINGS].http_base_url()
        data = RecordingEventData(
            **event_stream_fields(output),
            recording=recording_output(recording, http_base=http_base),
        )
        return data.model_dump(by_alias=True)

    def _media_state(self, stream_id: str) -> tuple[LivePath | None, CurrentSessionOutput | None]:
        """The stream's live path and current session on this node (none before the media
        context started or after it stopped)."""
        session = current_session_output(live_status(self._app, stream_id))
        return live_path(self._app, stream_id), session


def live_path(app: web.Application, stream_id: str) -> LivePath | None:
    """The live path of ``stream_id`` on this node (also while reconnecting), if any; none
    before the media context started or after it stopped."""
    paths = app.get(PATHS)
    path = paths.get(stream_id) if paths is not None else None
    return path if path is not None and not path.ending else None


def live_status(app: web.Application, stream_id: str) -> SessionStatus | None:
    """The status of the stream's live session, or None when it is not live."""
    path = live_path(app, stream_id)
    return session_status(path) if path is not None else None


def _relay_status(path: LivePath | None) -> StatusLookup:
    """The relay state of each restream target of ``path`` (none: not relaying)."""

    def lookup(target_id: str) -> OutputStatus | None:
        output = path.outputs.restreams.get(target_id) if path is not None else None
        return output.status() if output is not None else None

    return lookup


@dataclasses.dataclass(frozen=True)
class RestreamChange:
    """What a live path reported about one restream target."""

    target_id: str
    state: RestreamState
    last_error: str | None

    def overlay(self, lookup: StatusLookup) -> StatusLookup:
        """``lookup`` with this target's state as reported (the live path may have moved on
        by the time the event is rendered)."""
        state = OutputState.LIVE if self.state == "connected" else OutputState.FAILED

        def overlaid(target_id: str) -> OutputStatus | None:
            status = lookup(target_id)
            if target_id != self.target_id:
                return status
            if status is None:
                status = OutputStatus(
                    name=f"restream:{target_id}",
                    state=state,
                    since=time.time(),
                    retries=0,
                    restarts=0,
                    last_error=None,
                    stderr_tail=(),
                )
            return dataclasses.replace(status, state=state, last_error=self.last_error)

        return overlaid
