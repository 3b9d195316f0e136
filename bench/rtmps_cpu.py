"""CPU time of the RTMPS publish path: one publisher sends a fixed number of bytes of video
messages over TLS on loopback, and this prints the CPU seconds the listener's process spent
receiving them (the publisher runs in a child process, so its TLS is not counted).

    python -m bench.rtmps_cpu [--megabytes 200] [--plain]

``--plain`` publishes on the plain RTMP port instead, for the cost of TLS alone.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from config.settings import Settings
from ingest.server import RTMPServer
from ingest.tls import ServerCertificate
from tests.fakes import FakeClock, StubAdmission
from tests.protocol.helpers import VIDEO
from tests.rtmp_client import RawPublisher
from tests.tls_support import make_certificate

KEY = "k" * 20
MESSAGE = b"\x27\x01\x00\x00\x00" + bytes(60_000)
"""One inter-frame video message of about 60 KB."""


async def publish(port: int, cafile: str, megabytes: int) -> None:
    """The child process: publish ``megabytes`` MB of video messages (over TLS if ``cafile``)."""
    tls = None
    if cafile:
        from ssl import create_default_context

        tls = create_default_context(cafile=cafile)
    publisher, codes = await RawPublisher.start(port, KEY, tls=tls)
    assert codes == ["NetStream.Publish.Start"], codes
    for index in range(megabytes * 1_000_000 // len(MESSAGE)):
        assert await publisher.send(VIDEO, index * 33, MESSAGE)
    await publisher.writer.drain()
    publisher.close()


async def measure(megabytes: int, plain: bool) -> None:
    with tempfile.TemporaryDirectory() as directory:
        files = make_certificate(Path(directory), "bench")
        settings = Settings(
            data_dir=Path(directory),
            rtmp_host="127.0.0.1",
            rtmp_port=0,
            rtmps_port=0,
            tls_cert_file=str(files.cert),
            tls_key_file=str(files.key),
        )
        admission = StubAdmission({KEY: "5" * 24})
        certificate = ServerCertificate(str(files.cert), str(files.key))
        server = RTMPServer(
            settings, admission=admission, clock=FakeClock(), certificate=certificate
        )
        await server.start()
        port = server.port if plain else server.tls_port
        cafile = "" if plain else str(files.cert)
        started_cpu, started = time.process_time(), time.monotonic()
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.rtmps_cpu", "--child", str(port), cafile, str(megabytes)
        )
        assert await child.wait() == 0
        async with asyncio.timeout(120):
            await admission.paths[-1].left.wait()
        cpu, wall = time.process_time() - started_cpu, time.monotonic() - started
        received = admission.paths[-1].hub.bytes_in
        await server.close()
    what = "RTMP" if plain else "RTMPS"
    print(f"{what}: {received / 1e6:.0f} MB in {wall:.2f} s, listener CPU {cpu:.2f} s")


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        port, cafile, megabytes = sys.argv[2:5]
        asyncio.run(publish(int(port), cafile, int(megabytes)))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--plain", action="store_true")
    args = parser.parse_args()
    asyncio.run(measure(args.megabytes, args.plain))


if __name__ == "__main__":
    main()
