"""Log set-up shared by every package: text or JSON lines, with the request id and stream id of
the task that logged.

The ids travel in context variables: the HTTP middleware sets the request id for the request's
task, and the RTMP session sets the stream id for its connection's task, whose child tasks (the
outputs) inherit it. Nothing here holds mutable state of its own.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

request_id_var: ContextVar[str | None] = ContextVar("liverelay_request_id", default=None)
"""The id of the HTTP request being handled by the current task, if any."""
stream_id_var: ContextVar[str | None] = ContextVar("liverelay_stream_id", default=None)
"""The public id of the live stream the current task works for, if any."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"
CHATTY_LOGGERS = ("aiosqlite",)
"""Third-party loggers whose DEBUG lines print SQL parameters (stream keys, restream keys):
kept at INFO or above whatever the configured level."""


class ContextFilter(logging.Filter):
    """Adds ``request_id``, ``stream_id`` and a ready ``context`` string to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id, stream_id = request_id_var.get(), stream_id_var.get()
        parts = [f"request={request_id}"] if request_id else []
        if stream_id:
            parts.append(f"stream={stream_id}")
        record.__dict__.update(
            request_id=request_id,
            stream_id=stream_id,
            context=f" [{' '.join(parts)}]" if parts else "",
        )
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ids, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "stream_id"):
            value = getattr(record, key, None)
            if value:
                entry[key.replace("_id", "Id")] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level_name: str, log_format: str) -> logging.Handler:
    """Send all logs to stderr in ``log_format`` (``text`` or ``json``) at ``level_name``."""
    level = logging.getLevelName(level_name.upper())
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if isinstance(level, int) else logging.INFO)
    quiet_chatty_loggers()
    if not isinstance(level, int):
        logging.getLogger("liverelay").warning("unknown log level %r, using INFO", level_name)
    return handler


def quiet_chatty_loggers() -> None:
    """Keep :data:`CHATTY_LOGGERS` at INFO or above, so no secret reaches the logs."""
    for name in CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.level, logging.INFO))
