"""Test certificates for the RTMPS listener and the TLS proxies in front of liverelay:
self-signed, for ``localhost`` and ``127.0.0.1``, written as PEM files, and a client context
that trusts exactly one of them; and RTMPS listeners started with them (:class:`RTMPSServers`)."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from config.settings import Settings
from ingest.limits import Clock
from ingest.live import PathAdmission
from ingest.server import RTMPServer
from ingest.tls import ServerCertificate


@dataclass(frozen=True)
class CertificateFiles:
    """A certificate and its key on disk; ``name`` is its common name."""

    cert: Path
    key: Path
    name: str

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this certificate alone (host names checked)."""
        context = ssl.create_default_context(cafile=str(self.cert))
        return context


def make_certificate(directory: Path, name: str) -> CertificateFiles:
    """A new self-signed certificate with common name ``name`` (valid for ``localhost`` and
    ``127.0.0.1``), written to ``<directory>/<name>.crt`` and ``.key``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    alt_names = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(alt_names, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return CertificateFiles(cert_path, key_path, name)


def peer_common_name(der: bytes) -> str:
    """The common name of a DER certificate (what a TLS client was shown)."""
    cert = x509.load_der_x509_certificate(der)
    [attribute] = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attribute.value)


class RTMPSServers:
    """Starts RTMP servers with RTMPS on (``files`` as their certificate) on loopback, free
    ports, for the listener tests; :meth:`close` closes every one started."""

    def __init__(
        self,
        data_dir: Path,
        files: CertificateFiles,
        *,
        admission: PathAdmission,
        clock: Clock,
        handshake_timeout: float,
        certificate: ServerCertificate | None = None,
    ) -> None:
        self._data_dir = data_dir
        self._files = files
        self._admission = admission
        self._clock = clock
        self._handshake_timeout = handshake_timeout
        self._certificate = certificate
        self._started: list[RTMPServer] = []

    async def start(self, **overrides: object) -> RTMPServer:
        """A started server; ``overrides`` are settings fields."""
        values: dict[str, object] = {
            "data_dir": self._data_dir,
            "rtmp_host": "127.0.0.1",
            "rtmp_port": 0,
            "rtmps_port": 0,
            "tls_cert_file": str(self._files.cert),
            "tls_key_file": str(self._files.key),
            "rtmp_handshake_timeout": self._handshake_timeout,
        }
        values.update(overrides)
        settings = Settings(**values)  # type: ignore[arg-type]
        certificate = self._certificate or ServerCertificate(
            str(self._files.cert), str(self._files.key)
        )
        server = RTMPServer(
            settings, admission=self._admission, clock=self._clock, certificate=certificate
        )
        await server.start()
        self._started.append(server)
        return server

    async def close(self) -> None:
        for server in self._started:
            await server.close()
