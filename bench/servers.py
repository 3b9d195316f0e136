"""The servers under test, each started fresh in its own temporary directory on loopback ports.

Every server gets the same HLS settings: MPEG-TS segments of 2 s (cut on the source's 2 s
keyframes) and a 6-segment / 12 s live window.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    REPO_DIR,
    RESULTS_DIR,
    create_api_key,
    create_livestreams,
    free_port,
    liverelay_exe,
    stop_process,
    wait_for_liverelay,
    wait_for_port,
)

SEGMENT_SECONDS = 2
LIST_SIZE = 6


def extract_ref(ref: str) -> tuple[Path, str]:
    """``git archive`` commit ``ref`` of the repository into a temp dir; returns (dir, sha).
    Benchmarks a fixed commit even while the working tree is being edited."""
    sha = subprocess.run(
        ["git", "-C", str(REPO_DIR), "rev-parse", "--verify", f"{ref}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    target = Path(tempfile.mkdtemp(prefix=f"bench-src-{sha[:10]}-"))
    archive = subprocess.run(
        ["git", "-C", str(REPO_DIR), "archive", "--format=tar", sha],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target, sha


def liverelay_env(
    data_dir: Path, *, http_port: int, rtmp_port: int, metrics_port: int
) -> dict[str, str]:
    """This process's environment without its ``LIVERELAY_*`` settings, plus the settings every
    benchmarked ``liverelay serve`` gets: ``data_dir``, loopback ports (``metrics_port`` -1: no
    metrics listener) and the common HLS settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVERELAY_")}
    env.update(
        {
            "LIVERELAY_DATA_DIR": str(data_dir),
            "LIVERELAY_HTTP_HOST": "127.0.0.1",
            "LIVERELAY_HTTP_PORT": str(http_port),
            "LIVERELAY_RTMP_HOST": "127.0.0.1",
            "LIVERELAY_RTMP_PORT": str(rtmp_port),
            "LIVERELAY_METRICS_PORT": str(metrics_port),
            "LIVERELAY_HLS_SEGMENT_SECONDS": str(SEGMENT_SECONDS),
            "LIVERELAY_HLS_LIST_SIZE": str(LIST_SIZE),
        }
    )
    return env


@dataclass(frozen=True)
class Target:
    """One stream on one server: where to push, where to play, where the playlist is on disk."""

    name: str
    publish_url: str
    playlist_url: str
    playlist_file: Path


class Server:
    """Base: a subprocess in its own session (so the whole group can be stopped by its pgid)."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: asyncio.subprocess.Process | None = None
        self.log_path = workdir / "server.log"

    @property
    def root_pids(self) -> list[int]:
        """Roots of the process tree whose CPU and memory are measured."""
        assert self.proc is not None
        return [self.proc.pid]

    async def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.log_path, "ab")  # noqa: ASYNC230 - handed to the child
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                cwd=self.workdir,
            )
        finally:
            log.close()

    async def start(self) -> None:
        raise NotImplementedError

    async def create_streams(self, count: int) -> list[Target]:
        raise NotImplementedError

    async def stop(self) -> None:
        if self.proc is None:
            return
        await stop_process(self.proc, grace=15.0)
        # anything the server left behind in its own process group (ffmpeg children)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Liverelay(Server):
    """``liverelay serve`` with LIVERELAY_* settings and SQLite (or ``database_url``)."""

    name = "liverelay"

    serve_argv: list[str] | None = None
    """When set, run this instead of ``liverelay serve`` (e.g. under a profiler)."""
    source_dir: Path | None = None
    """When set (``--liverelay-ref``), liverelay is imported from this extracted source tree
    instead of the working tree the venv's editable install points at."""
    extra_env: tuple[tuple[str, str], ...] = ()
    """More ``LIVERELAY_*`` settings (``--liverelay-env``), applied last."""

    def __init__(self, workdir: Path, *, database_url: str | None = None) -> None:
        super().__init__(workdir)
        self.http_port = free_port()
        self.rtmp_port = free_port()
        self.database_url = database_url
        self.token: str | None = None
        env = liverelay_env(
            workdir / "data", http_port=self.http_port, rtmp_port=self.rtmp_port, metrics_port=-1
        )
        env.update(
            {
                "LIVERELAY_RTMP_MAX_CONNECTIONS": "2000",
                # every publisher comes from 127.0.0.1: lift the per-address cap (default 10)
                "LIVERELAY_RTMP_MAX_CONNECTIONS_PER_ADDRESS": "2000",
            }
        )
        if database_url:
            env["LIVERELAY_DATABASE_URL"] = database_url
        env.update(self.extra_env)
        paths = [str(self.source_dir)] if self.source_dir is not None else []
        if self.serve_argv is not None:
            paths.append(str(REPO_DIR))  # for ``python -m bench.<wrapper>``
        if paths:
            # PYTHONPATH entries come before the editable install's path hook
            env["PYTHONPATH"] = os.pathsep.join(paths)
        self.env = env

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def start(self) -> None:
        # the API key first: it migrates the database, so serve starts on a ready schema
        self.token = await create_api_key(self.env, self.workdir, "bench")
        await self._spawn(self.serve_argv or [liverelay_exe(), "serve"], self.env)
        assert self.proc is not None
        await wait_for_liverelay(self.http_port, self.rtmp_port, self.proc)

    @property
    def auth(self) -> dict[str, str]:
        assert self.token is not None
        return {"Authorization": self.token}

    async def create_streams(self, count: int) -> list[Target]:
        assert self.token is not None
        return [
            Target(
                name=body["id"],
                publish_url=body["upstreamUrl"],
                playlist_url=body["downstreamUrl"],
                playlist_file=self.workdir / "data" / "live" / body["id"] / "index.m3u8",
            )
            for body in await create_livestreams(
                self.base_url, self.token, "bench", count, latencyMode="standard"
            )
        ]


NGINX_CONF = """\
worker_processes 1;
user root root;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
load_module {module};

events {{
    worker_connections 8192;
}}

rtmp {{
    server {{
        listen 127.0.0.1:{rtmp_port};
        chunk_size 4096;
        application live {{
            live on;
            record off;
            hls on;
            hls_path {dir}/hls;
            hls_fragment {segment}s;
            hls_playlist_length {window}s;
            hls_cleanup on;
        }}
    }}
}}

http {{
    access_log off;
    sendfile on;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    types {{
        application/vnd.apple.mpegurl m3u8;
        video/mp2t ts;
    }}
    server {{
        listen 127.0.0.1:{http_port};
        location /hls/ {{
            alias {dir}/hls/;
            add_header Cache-Control no-cache;
        }}
    }}
}}
"""

NGINX_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"


class Nginx(Server):
    """nginx with the nginx-rtmp module (Debian's ``libnginx-mod-rtmp``), HLS on, one worker."""

    name = "nginx"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.http_port = free_port()
        self.rtmp_port = free_port()

    @staticmethod
    def available() -> str | None:
        if not shutil.which("nginx"):
            return "nginx not installed (apt-get install nginx libnginx-mod-rtmp)"
        if not Path(NGINX_MODULE).exists():
            return "nginx-rtmp module missing (apt-get install libnginx-mod-rtmp)"
        return None

    async def start(self) -> None:
        d = self.workdir
        (d / "hls").mkdir(parents=True, exist_ok=True)
        (d / "tmp").mkdir(exist_ok=True)
        conf = d / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                dir=d,
                module=NGINX_MODULE,
                rtmp_port=self.rtmp_port,
                http_port=self.http_port,
                segment=SEGMENT_SECONDS,
                window=SEGMENT_SECONDS * LIST_SIZE,
            )
        )
        await self._spawn(["nginx", "-p", str(d), "-c", str(conf), "-g", "daemon off;"])
        assert self.proc is not None
        await wait_for_port(self.http_port, 20, self.proc)
        await wait_for_port(self.rtmp_port, 20, self.proc)

    async def create_streams(self, count: int) -> list[Target]:
        return [
            Target(
                name=f"s{i}",
                publish_url=f"rtmp://127.0.0.1:{self.rtmp_port}/live/s{i}",
                playlist_url=f"http://127.0.0.1:{self.http_port}/hls/s{i}.m3u8",
                playlist_file=self.workdir / "hls" / f"s{i}.m3u8",
            )
            for i in range(count)
        ]


NMS_DIR = RESULTS_DIR / "nms"
NMS_SCRIPT = """\
const NodeMediaServer = require('node-media-server');
const config = JSON.parse(process.argv[2]);
const nms = new NodeMediaServer(config);
nms.run();
process.on('SIGTERM', () => process.exit(0));
"""


class NodeMediaServer(Server):
    """node-media-server 2.x: RTMP in Node.js, one ffmpeg per stream pulling RTMP back and
    writing HLS (``trans`` task). Installed under bench/results/nms by ``npm install``."""

    name = "nms"

    def __init__(self, workdir: Path, *, ffmpeg: str) -> None:
        super().__init__(workdir)
        self.http_port = free_port()
        self.rtmp_port = free_port()
        self.ffmpeg = ffmpeg

    @staticmethod
    def available() -> str | None:
        if not shutil.which("node"):
            return "node not installed"
        if not (NMS_DIR / "node_modules" / "node-media-server").exists():
            return (
                "node-media-server missing: (mkdir -p bench/results/nms && cd bench/results/nms "
                "&& npm init -y && npm install node-media-server@2)"
            )
        return None

    async def start(self) -> None:
        media = self.workdir / "media"
        media.mkdir(parents=True, exist_ok=True)
        config = {
            "logType": 1,
            "rtmp": {
                "port": self.rtmp_port,
                "chunk_size": 60000,
                "gop_cache": True,
                "ping": 30,
                "ping_timeout": 60,
            },
            "http": {"port": self.http_port, "mediaroot": str(media), "allow_origin": "*"},
            "trans": {
                "ffmpeg": self.ffmpeg,
                "tasks": [
                    {
                        "app": "live",
                        "hls": True,
                        "hlsFlags": f"[hls_time={SEGMENT_SECONDS}:hls_list_size={LIST_SIZE}"
                        ":hls_flags=delete_segments]",
                    }
                ],
            },
        }
        script = self.workdir / "nms.js"
        script.write_text(textwrap.dedent(NMS_SCRIPT))
        env = {**os.environ, "NODE_PATH": str(NMS_DIR / "node_modules")}
        await self._spawn(["node", str(script), json.dumps(config)], env)
        assert self.proc is not None
        await wait_for_port(self.rtmp_port, 20, self.proc)
        await wait_for_port(self.http_port, 20, self.proc)

    async def create_streams(self, count: int) -> list[Target]:
        media = self.workdir / "media"
        return [
            Target(
                name=f"s{i}",
                publish_url=f"rtmp://127.0.0.1:{self.rtmp_port}/live/s{i}",
                playlist_url=f"http://127.0.0.1:{self.http_port}/live/s{i}/index.m3u8",
                playlist_file=media / "live" / f"s{i}" / "index.m3u8",
            )
            for i in range(count)
        ]
