"""Structured logs: JSON lines carrying the request and stream ids of the logging task."""

import asyncio
import io
import json
import logging

from config.logs import ContextFilter, JsonFormatter, request_id_var, stream_id_var


def capture() -> tuple[logging.Logger, io.StringIO]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"test.logs.{id(buffer)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, buffer


async def test_ids_follow_the_task_that_logs() -> None:
    logger, buffer = capture()

    async def connection(stream_id: str) -> None:
        stream_id_var.set(stream_id)
        await asyncio.sleep(0)
        await asyncio.create_task(child())  # outputs started by the session inherit the id

    async def child() -> None:
        logger.info("segment written")

    async def request() -> None:
        request_id_var.set("req-1")
        logger.info("handled")

    await asyncio.gather(connection("a" * 24), connection("b" * 24), asyncio.create_task(request()))
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert sorted(line.get("streamId", "") for line in lines) == ["", "a" * 24, "b" * 24]
    assert [line["requestId"] for line in lines if "requestId" in line] == ["req-1"]
    assert all(set(line) >= {"time", "level", "logger", "message"} for line in lines)


def test_json_line_includes_exception() -> None:
    logger, buffer = capture()
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    entry = json.loads(buffer.getvalue())
    assert entry["level"] == "ERROR" and "ValueError: boom" in entry["exception"]
