"""RTMPS ingest through ``liverelay serve``: ffmpeg publishes over TLS (checking the server's
certificate) and the stream plays; SIGHUP swaps the certificate for new handshakes while the
publisher stays live."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import (
    Publisher,
    Sources,
    download_and_decode,
    free_port,
    has_segment,
    push,
    segment_count,
    wait_for_playlist,
)
from tests.e2e.serve_process import Service
from tests.e2e.serve_process import service as service
from tests.polling import eventually
from tests.tls_support import CertificateFiles, make_certificate, peer_common_name

pytestmark = pytest.mark.e2e


async def create_stream(service: Service, token: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{service.url}/v1/livestreams",
            json={"name": "rtmps"},
            headers={"Authorization": token},
        ) as response,
    ):
        assert response.status == 201, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def shown_certificate(port: int, files: CertificateFiles) -> str | None:
    """The common name of the certificate the RTMPS port shows, if it is ``files``' (a client
    trusting ``files`` alone); ``None`` while it shows another one."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=files.client_context())
    except ssl.SSLCertVerificationError:
        return None
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return peer_common_name(der)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


async def test_ffmpeg_publishes_over_rtmps_and_sighup_rotates_the_certificate(
    tmp_path: Path,
    service: Service,
    ffmpeg_exe: str,
    sources: Sources,
    publishers: list[Publisher],
) -> None:
    for directory in ("first", "second", "data"):
        (tmp_path / directory).mkdir()
    first = make_certificate(tmp_path / "first", "first")
    second = make_certificate(tmp_path / "second", "second")
    rtmps_port = free_port()
    service.env.update(
        LIVERELAY_RTMPS_PORT=str(rtmps_port),
        LIVERELAY_TLS_CERT_FILE=str(first.cert),
        LIVERELAY_TLS_KEY_FILE=str(first.key),
    )
    await service.start()
    token = json.loads(await service.command("apikey", "create", "--name", "rtmps"))["token"]
    stream = await create_stream(service, token)
    key = stream["streamKey"]
    assert stream["upstreamUrl"] == f"rtmp://127.0.0.1:{service.rtmp_port}/live/{key}"
    assert stream["secureUpstreamUrl"] == f"rtmps://127.0.0.1:{rtmps_port}/live/{key}"
    assert stream["secureStreamUrl"] == f"rtmps://127.0.0.1:{rtmps_port}/live"

    verify = ("-tls_verify", "1", "-ca_file", str(first.cert))
    publisher = await push(
        ffmpeg_exe, sources.av, stream["secureUpstreamUrl"], loop=True, output_options=verify
    )
    publishers.append(publisher)
    playlist = await wait_for_playlist(stream["downstreamUrl"], has_segment)
    decoded = await download_and_decode(stream["downstreamUrl"], playlist)
    assert decoded.video_codec == "h264" and decoded.video_frames > 0

    # Rotate: the files now hold "second"; SIGHUP makes new handshakes show it.
    first.cert.write_bytes(second.cert.read_bytes())
    first.key.write_bytes(second.key.read_bytes())
    assert service.process is not None
    service.process.send_signal(signal.SIGHUP)
    await eventually(lambda: shown_certificate(rtmps_port, second), 15, interval=0.1)
    assert "RTMPS certificate reloaded" in service.log.read_text()

    # The publisher that connected with "first" is still live: the playlist keeps growing.
    seen = segment_count(await wait_for_playlist(stream["downstreamUrl"], has_segment))
    await wait_for_playlist(stream["downstreamUrl"], lambda text: segment_count(text) > seen + 1)
    assert publisher.process.returncode is None
