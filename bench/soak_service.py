"""The soaked service: ``liverelay serve`` in its own session, with a temporary data directory,
a metrics listener and JSON logs (read back at the end)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path
from typing import Any

from bench.common import create_api_key, free_port, liverelay_exe, wait_for_liverelay
from bench.servers import Server, liverelay_env


class Service(Server):
    """``liverelay serve`` in its own session, with a temporary data directory."""

    name = "liverelay"

    def __init__(self, workdir: Path, *, publishers: int, source_dir: Path | None) -> None:
        super().__init__(workdir)
        self.data_dir = workdir / "data"
        self.http_port = free_port()
        self.rtmp_port = free_port()
        self.metrics_port = free_port()
        self.token: str | None = None
        env = liverelay_env(
            self.data_dir,
            http_port=self.http_port,
            rtmp_port=self.rtmp_port,
            metrics_port=self.metrics_port,
        )
        env.update(
            {
                "LIVERELAY_LOG_FORMAT": "json",
                # every publisher connects from 127.0.0.1: the default cap is 10 per address
                "LIVERELAY_RTMP_MAX_CONNECTIONS_PER_ADDRESS": str(max(10, publishers + 10)),
            }
        )
        if source_dir is not None:
            # PYTHONPATH comes before the editable install's path hook
            env["PYTHONPATH"] = str(source_dir)
        self.env = env

    @property
    def base_url(self) -> str:
        """The control API's base URL."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        """The Prometheus endpoint."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def ports(self) -> dict[int, str]:
        """Listening port -> name, to count sockets by listener."""
        return {self.http_port: "http", self.rtmp_port: "rtmp", self.metrics_port: "metrics"}

    @property
    def pid(self) -> int:
        """The Python process's pid."""
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        """Create the API key, start ``liverelay serve``, wait until it answers /healthz."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # the API key first: the CLI migrates the database, so serve starts on a ready schema
        self.token = await create_api_key(self.env, self.workdir, "soak")
        await self._spawn([liverelay_exe(), "serve"], self.env)
        assert self.proc is not None
        await wait_for_liverelay(self.http_port, self.rtmp_port, self.proc)

    async def terminate(self, timeout: float) -> dict[str, Any]:
        """SIGTERM; the exit status and how long it took (SIGKILL past ``timeout``)."""
        assert self.proc is not None
        if self.proc.returncode is not None:
            return {"exit_code": self.proc.returncode, "seconds": 0.0, "already_exited": True}
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
            return {"exit_code": code, "seconds": time.monotonic() - started, "killed": False}
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            code = await self.proc.wait()
            return {"exit_code": code, "seconds": time.monotonic() - started, "killed": True}

    def log_levels(self) -> dict[str, Any]:
        """Log lines by level, and the WARNING/ERROR messages (deduplicated, counted)."""
        levels: dict[str, int] = {}
        messages: dict[str, int] = {}
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return {"levels": levels, "messages": []}
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                levels["unparsed"] = levels.get("unparsed", 0) + 1
                continue
            level = str(entry.get("level", "?"))
            levels[level] = levels.get(level, 0) + 1
            if level in ("WARNING", "ERROR", "CRITICAL"):
                key = f"{level} {entry.get('logger')}: {str(entry.get('message'))[:300]}"
                messages[key] = messages.get(key, 0) + 1
        top = sorted(messages.items(), key=lambda kv: -kv[1])[:30]
        return {"levels": levels, "messages": [{"count": c, "line": m} for m, c in top]}
