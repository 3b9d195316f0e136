"""The checks a :class:`~config.settings.Settings` runs on itself when it is built.

Each raises :class:`~config.values.SettingsError` naming the variable at fault.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from config.values import SettingsError

if TYPE_CHECKING:
    from config.settings import Settings

_NODE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def check_settings(settings: Settings) -> None:
    """Raise :class:`SettingsError` if any setting is out of range or malformed."""
    if settings.hls_segment_seconds <= 0:
        raise SettingsError("LIVERELAY_HLS_SEGMENT_SECONDS must be > 0")
    if settings.log_format not in ("text", "json"):
        raise SettingsError("LIVERELAY_LOG_FORMAT must be 'text' or 'json'")
    if settings.access_log not in ("all", "api"):
        raise SettingsError("LIVERELAY_ACCESS_LOG must be 'all' or 'api'")
    if settings.hls_list_size < 2:
        raise SettingsError("LIVERELAY_HLS_LIST_SIZE must be >= 2")
    if not settings.deletion_check_seconds > 0:
        raise SettingsError("LIVERELAY_DELETION_CHECK_SECONDS must be > 0")
    if settings.retention_days < 0:
        raise SettingsError("LIVERELAY_RETENTION_DAYS must be >= 0 (0: keep forever)")
    if not settings.loop_lag_probe_seconds >= 0:
        raise SettingsError("LIVERELAY_LOOP_LAG_PROBE_SECONDS must be >= 0 (0: no probe)")
    if not settings.token_cache_seconds >= 0:
        raise SettingsError("LIVERELAY_TOKEN_CACHE_SECONDS must be >= 0")
    if settings.console_session_seconds < 60:
        raise SettingsError("LIVERELAY_CONSOLE_SESSION_SECONDS must be >= 60")
    if settings.restream_ca_file is not None and not os.path.isfile(settings.restream_ca_file):
        raise SettingsError(
            f"LIVERELAY_RESTREAM_CA_FILE={settings.restream_ca_file!r} is not a readable file"
        )
    check_rtmp_limits(settings)
    check_proxies(settings)
    check_tokens(settings)
    check_cluster(settings)
    check_storage(settings)
    check_rtmps(settings)
    for name in ("http_port", "rtmp_port"):
        port = getattr(settings, name)
        if not 0 <= port <= 65535:
            raise SettingsError(f"LIVERELAY_{name.upper()} must be a port number")
    if not -1 <= settings.metrics_port <= 65535:
        raise SettingsError("LIVERELAY_METRICS_PORT must be a port number, or -1 (off)")
    if settings.metrics_token is not None and not settings.metrics_token.value.strip():
        raise SettingsError("LIVERELAY_METRICS_TOKEN must not be blank")


def check_storage(settings: Settings) -> None:
    if settings.storage_url is not None:
        settings.s3_location  # noqa: B018 (raises SettingsError when malformed)
    if settings.s3_endpoint is not None:
        endpoint = urlsplit(settings.s3_endpoint)
        if endpoint.scheme not in ("http", "https") or not endpoint.hostname:
            raise SettingsError(
                f"LIVERELAY_S3_ENDPOINT={settings.s3_endpoint!r} must be an http:// or https:// URL"
            )
        if endpoint.path not in ("", "/") or endpoint.query or endpoint.username:
            raise SettingsError(
                f"LIVERELAY_S3_ENDPOINT={settings.s3_endpoint!r} must be scheme://host[:port] only"
            )
    if not re.fullmatch(r"[a-z0-9-]{1,64}", settings.s3_region):
        raise SettingsError(f"LIVERELAY_S3_REGION={settings.s3_region!r} is not a region name")
    if settings.upload_backlog_mb < 1:
        raise SettingsError("LIVERELAY_UPLOAD_BACKLOG_MB must be >= 1")


def check_tokens(settings: Settings) -> None:
    if settings.jwt_leeway_seconds < 0:
        raise SettingsError("LIVERELAY_JWT_LEEWAY_SECONDS must be >= 0")
    if settings.jwt_max_ttl_seconds < 1:
        raise SettingsError("LIVERELAY_JWT_MAX_TTL_SECONDS must be >= 1")
    if not 0 < settings.token_ttl_seconds <= settings.jwt_max_ttl_seconds:
        raise SettingsError(
            "LIVERELAY_TOKEN_TTL_SECONDS must be > 0 and at most "
            f"LIVERELAY_JWT_MAX_TTL_SECONDS ({settings.jwt_max_ttl_seconds})"
        )


def check_cluster(settings: Settings) -> None:
    if settings.node_id is not None and not _NODE_ID.fullmatch(settings.node_id):
        raise SettingsError(
            "LIVERELAY_NODE_ID must be 1 to 128 letters, digits, '.', '_', ':' or '-'"
        )
    if settings.internal_url is not None and urlsplit(settings.internal_url).scheme not in (
        "http",
        "https",
    ):
        raise SettingsError("LIVERELAY_INTERNAL_URL must be an http:// or https:// URL")
    if not settings.lease_seconds > 0:
        raise SettingsError("LIVERELAY_LEASE_SECONDS must be > 0")
    if not settings.drain_seconds > 0:
        raise SettingsError("LIVERELAY_DRAIN_SECONDS must be > 0")


def check_rtmp_limits(settings: Settings) -> None:
    for name, lowest in (
        ("rtmp_max_connections_per_address", 1),
        ("rtmp_max_send_buffer", 1),
        ("rtmp_max_publish_kbps", 0),
        ("rtmp_auth_failures_per_minute", 0),
        ("rtmp_read_interval", 0),
    ):
        if getattr(settings, name) < lowest:
            raise SettingsError(f"LIVERELAY_{name.upper()} must be >= {lowest}")
    if not settings.rtmps_handshake_rate >= 0:  # NaN too
        raise SettingsError("LIVERELAY_RTMPS_HANDSHAKE_RATE must be >= 0 (0: no limit)")
    if settings.rtmps_handshake_burst < 1:
        raise SettingsError("LIVERELAY_RTMPS_HANDSHAKE_BURST must be >= 1")


def check_rtmps(settings: Settings) -> None:
    """The RTMPS listener's port, and a certificate and key that load together; no
    certificate or key without the port (they would be ignored)."""
    if settings.rtmps_port == -1:
        for var, path in (
            ("LIVERELAY_TLS_CERT_FILE", settings.tls_cert_file),
            ("LIVERELAY_TLS_KEY_FILE", settings.tls_key_file),
        ):
            if path is not None:
                raise SettingsError(
                    f"{var} is set but LIVERELAY_RTMPS_PORT is not: set the port to serve "
                    "RTMPS, or unset the certificate and key"
                )
        return
    if not 0 <= settings.rtmps_port <= 65535:
        raise SettingsError("LIVERELAY_RTMPS_PORT must be a port number, or -1 (off)")
    if settings.rtmps_port != 0 and settings.rtmps_port == settings.rtmp_port:
        if settings.rtmps_listen_host == settings.rtmp_host:
            raise SettingsError("LIVERELAY_RTMPS_PORT must differ from LIVERELAY_RTMP_PORT")
    files = {"LIVERELAY_TLS_CERT_FILE": settings.tls_cert_file}
    files["LIVERELAY_TLS_KEY_FILE"] = settings.tls_key_file
    for var, path in files.items():
        if path is None:
            raise SettingsError(f"LIVERELAY_RTMPS_PORT is set: {var} is needed too")
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            raise SettingsError(f"{var}={path!r} is not a readable file")
    try:
        load_server_certificate(settings.tls_cert_file or "", settings.tls_key_file or "")
    except (ssl.SSLError, OSError) as exc:
        raise SettingsError(
            f"LIVERELAY_TLS_CERT_FILE={settings.tls_cert_file!r} and "
            f"LIVERELAY_TLS_KEY_FILE={settings.tls_key_file!r} do not load: {exc}"
        ) from None


def load_server_certificate(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A TLS server context with the certificate chain and key of these PEM files (an
    encrypted key is refused: nobody is there to type its passphrase). Raises
    :class:`ssl.SSLError` or :class:`OSError`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file, password=_no_passphrase)
    return context


def _no_passphrase() -> str:
    raise ssl.SSLError("the private key is encrypted; give it without a passphrase")


def parse_networks(raw: str) -> tuple[IPNetwork, ...]:
    """``LIVERELAY_TRUSTED_PROXIES``: comma-separated networks; a bare address is its /32 or
    /128. A network with host bits set (``10.0.0.1/8``) is refused: it is likely a typo."""
    networks: list[IPNetwork] = []
    for item in raw.split(","):
        if not (text := item.strip()):
            continue
        try:
            networks.append(ipaddress.ip_network(text))
        except ValueError as exc:
            raise SettingsError(
                f"LIVERELAY_TRUSTED_PROXIES: {text!r} is not a network: {exc}"
            ) from None
    return tuple(networks)


def check_proxies(settings: Settings) -> None:
    networks = parse_networks(settings.trusted_proxies)
    if settings.rtmp_proxy_protocol and not networks:
        raise SettingsError(
            "LIVERELAY_RTMP_PROXY_PROTOCOL=true needs LIVERELAY_TRUSTED_PROXIES: the networks of "
            "the proxies allowed to send PROXY headers"
        )
