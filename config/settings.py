"""The typed, frozen settings object, built once from the environment.

Every field has a docstring-style comment and a default so that ``liverelay serve`` runs with zero
configuration: SQLite in the data directory and segments on local disk. ``Settings`` is passed
explicitly to whatever needs it; nothing reads the environment after start-up.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from config.checks import IPNetwork, check_settings, parse_networks
from config.values import ENV_PREFIX, Secret, SettingsError, parse_env_value, redact_url

__all__ = ["ENV_PREFIX", "Secret", "Settings", "SettingsError", "redact_url"]
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class Settings:
    """Everything liverelay can be told, with safe defaults. Field names map to
    ``LIVERELAY_<FIELD_NAME_UPPER>`` environment variables."""

    http_host: str = "0.0.0.0"
    """Address the HTTP API and HLS playback listen on."""
    http_port: int = 8080
    """Port of the HTTP API and HLS playback (0 picks a free port)."""
    rtmp_host: str = "0.0.0.0"
    """Address the RTMP ingest listens on."""
    rtmp_port: int = 1935
    """Port of the RTMP ingest (0 picks a free port)."""
    rtmps_host: str | None = None
    """Address the RTMPS (RTMP over TLS) ingest listens on; default: ``rtmp_host``."""
    rtmps_port: int = -1
    """Port of the RTMPS ingest (-1, the default, turns it off; 0 picks a free port). Needs
    ``tls_cert_file`` and ``tls_key_file``."""
    tls_cert_file: str | None = None
    """PEM certificate chain (the server's certificate first) of the RTMPS ingest; read again
    on SIGHUP. Set without ``rtmps_port``, it is refused (it would not be served)."""
    tls_key_file: str | None = None
    """PEM private key (not encrypted) of ``tls_cert_file``; read again on SIGHUP."""
    rtmps_handshake_rate: float = 1.0
    """TLS handshakes per second one client address (an IPv6 client: its /64; behind a trusted
    proxy: the address its PROXY header reports) may start on the RTMPS port, on average, once
    its ``rtmps_handshake_burst`` is spent; a connection past it is closed at the accept, before
    any TLS work. A failed handshake counts twice. 0 = no limit."""
    rtmps_handshake_burst: int = 10
    """TLS handshakes one client address may start on the RTMPS port in a burst, before
    ``rtmps_handshake_rate`` applies (its bucket refills at that rate up to this)."""
    data_dir: Path = Path("./data")
    """Directory for the SQLite file, live HLS output and recordings."""
    database_url: Secret | None = None
    """SQLAlchemy URL; default ``sqlite+aiosqlite:///<data_dir>/liverelay.db``.
    PostgreSQL: ``postgresql+asyncpg://user:pass@host/db``."""
    public_rtmp_url: str | None = None
    """Base of ``upstreamUrl``/``streamUrl`` (e.g. ``rtmp://live.example.com``); default from the
    RTMP listen address."""
    public_rtmps_url: str | None = None
    """Base of ``secureUpstreamUrl``/``secureStreamUrl`` (e.g. ``rtmps://live.example.com``);
    default from the RTMPS listen address. Used only when the RTMPS ingest is on."""
    public_http_url: str | None = None
    """Base of ``downstreamUrl``/``recordingUrl`` (e.g. ``https://live.example.com``); default
    from the HTTP listen address."""
    ffmpeg: str | None = None
    """Path of the ffmpeg binary; default: the imageio-ffmpeg binary, then ``ffmpeg`` on PATH."""
    hls_segment_seconds: float = 2.0
    """Target HLS segment duration in seconds (segments cut on keyframes)."""
    hls_list_size: int = 6
    """Segments kept in the live playlist window (low-latency mode keeps at least enough for a
    delta update to skip some: 9 of 2 s)."""
    log_level: str = "INFO"
    """Python log level name."""
    log_format: str = "text"
    """``text`` (human-readable lines) or ``json`` (one JSON object per line)."""
    access_log: str = "api"
    """``all`` (a line per HTTP request) or ``api`` (a line per request, except playback answered
    without an error: one summary line per stream and minute instead)."""
    cors_allow_origin: str = "*"
    """``Access-Control-Allow-Origin`` sent with playlists and segments."""
    max_request_bytes: int = 1_048_576
    """Largest accepted HTTP request body."""
    rtmp_handshake_timeout: float = 10.0
    """Seconds a client has to complete the RTMP handshake and publish."""
    rtmp_idle_timeout: float = 30.0
    """Seconds without data after which a publisher is dropped."""
    rtmp_max_connections: int = 1000
    """Concurrent RTMP connections accepted in total."""
    rtmp_max_connections_per_address: int = 10
    """Concurrent RTMP connections from one client IP address that are not publishing yet
    (handshake, connect, key check). Accepted publishers do not count: they are bounded by
    ``rtmp_max_connections`` and one per stream key."""
    rtmp_max_message_size: int = 16 * 1024 * 1024
    """Largest RTMP message (one video frame) accepted once a publish is accepted, in bytes.
    Before that the limit is 64 KiB (and 8 chunk streams)."""
    rtmp_max_chunk_size: int = 16 * 1024 * 1024
    """Largest chunk size a peer may announce once its publish is accepted (64 KiB before)."""
    rtmp_max_publish_kbps: int = 0
    """Highest incoming bitrate of one RTMP connection in kbit/s, averaged over 5 s; a faster
    client is dropped. 0 = no limit."""
    rtmp_auth_failures_per_minute: int = 10
    """Publishes refused for a bad stream key that one client address may make per minute; past
    that its publishes are refused without checking the key until the minute is over. 0 = no
    limit."""
    rtmp_max_send_buffer: int = 1024 * 1024
    """Bytes of replies an RTMP client may leave unread before it is dropped."""
    rtmp_read_interval: float = 0.04
    """Seconds of a publisher's media its socket collects before it is read (the receive
    low-water mark follows the bitrate), so one read takes several messages: less CPU per
    stream for about this much added delay (at most about four times it). 0 = read each
    message as it arrives."""
    rtmp_proxy_protocol: bool = False
    """Read a PROXY protocol header (version 1 or 2) at the start of every RTMP connection from
    ``trusted_proxies``: the client address it reports is used for the limits, the throttle of
    refused keys, the logs and ``clientAddress``. A trusted proxy's connection without a header,
    and a header from any other address, are refused; other addresses connect directly."""
    trusted_proxies: str = ""
    """Comma-separated networks (``10.0.0.0/8``, ``192.0.2.7/32``, ``2001:db8::/32``) of the TCP
    proxies or load balancers in front of the RTMP port; required by ``rtmp_proxy_protocol``."""
    hub_queue_bytes: int = 8 * 1024 * 1024
    """Bytes of media buffered per output (sequence headers included) before it drops frames
    until the next keyframe."""
    output_stall_seconds: float = 15.0
    """An ffmpeg output making no progress for this long is restarted."""
    output_backoff_max_seconds: float = 30.0
    """Cap of the exponential backoff between restarts of a failing output."""
    restream_ca_file: str | None = None
    """PEM bundle of the certificate authorities trusted for ``rtmps://`` restream targets,
    instead of the system store. Certificates (chain and host name) are always verified."""
    allow_private_targets: bool = False
    """Allow restream/webhook targets on loopback, link-local and private addresses. When false,
    such hosts are refused in every spelling at creation, names are judged by what they resolve
    to right before each connection, and restream connection failures read only "could not
    connect to the target" in ``lastError``."""
    metrics_host: str = "127.0.0.1"
    """Address of the metrics listener, which serves ``GET /metrics`` only."""
    metrics_port: int = 9090
    """Port of the metrics listener (0 picks a free port; -1 turns the listener off)."""
    metrics_token: Secret | None = None
    """When set, ``GET /metrics`` is also served on the public HTTP port, to requests with
    ``Authorization: Bearer <token>``. Unset (the default), the public port answers 404."""
    loop_lag_probe_seconds: float = 1.0
    """Time between two probes of the event loop's lag (``liverelay_event_loop_lag_seconds`` in
    ``/metrics``); 0 turns the probe off. Every probe wakes the loop, which on an idle node costs
    about 0.2 ms of CPU per wake-up (measured on a 2-vCPU VM): 0.25 s cost 0.1 % of a core."""
    jwt_leeway_seconds: int = 60
    """Clock skew allowed when checking an API token's ``exp``, ``nbf`` and ``iat``."""
    jwt_max_ttl_seconds: int = 2_678_400
    """Longest API token lifetime accepted (``exp - iat``; ``exp - now`` for a token without
    ``iat``), 31 days by default. Longer-lived tokens are refused."""
    token_ttl_seconds: int = 86_400
    """Lifetime of tokens printed by ``liverelay apikey create`` and ``liverelay token``; at
    most ``jwt_max_ttl_seconds``."""
    token_cache_seconds: float = 5.0
    """Seconds a verified API token is remembered, so that a client's next requests skip the JWT
    check and the account look-up. A deleted API key keeps working this long at most (on every
    node). 0 = no cache."""
    console_session_seconds: int = 28_800
    """Lifetime of an operator console sign-in (``POST /console/session``), 8 hours by default;
    never longer than the token signed in with."""
    console_vendor_dir: Path | None = None
    """The ``node_modules`` directory hls.js is served from at ``/console/vendor/``; default:
    ``node_modules`` beside the installed packages, then in the working directory."""
    deletion_check_seconds: float = 2.0
    """Seconds between two checks for streams and accounts deleted elsewhere (``liverelay
    apikey delete``, another node): their live publishers are disconnected within about this
    long. The check asks the database only while something is live on this node."""
    retention_days: int = 30
    """Days webhook deliveries (by event time) and ended live sessions (by end time) are kept;
    older ones are deleted hourly. Pending deliveries and live sessions are never deleted.
    0 = keep forever."""
    storage_url: str | None = None
    """Where recordings are kept. Unset: on local disk under ``<data_dir>/recordings``.
    ``s3://bucket`` or ``s3://bucket/prefix``: in S3-compatible object storage (credentials
    from ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``)."""
    s3_endpoint: str | None = None
    """Base URL of the S3-compatible server (e.g. ``http://127.0.0.1:8333``); unset: AWS S3."""
    s3_region: str = "us-east-1"
    """Region the S3 requests are signed for."""
    upload_backlog_mb: int = 512
    """MiB of recorded segments that may wait on local disk (under ``<data_dir>/upload-backlog``)
    while object storage is unreachable. A segment that would go past it fails its recording."""

    node_id: str | None = None
    """This node's id among the nodes sharing the database (letters, digits, ``.``, ``_``,
    ``:``, ``-``; at most 128). Default: the host name and 6 random hex digits, new for every
    process. It must be unique among running nodes: a node refuses to start while another one
    with its id heartbeats."""
    internal_url: str | None = None
    """Base URL at which the other nodes reach this node's HTTP port; default from the HTTP
    listen address (the host name when listening on every address)."""
    lease_seconds: float = 10.0
    """Lifetime of a stream ownership lease, renewed every third of it; also the node
    heartbeat's period times three, and the silence after which a node is shown as lost."""

    drain_seconds: float = 20.0
    """Bound of ending this node's live streams when it drains (SIGTERM, ``liverelay drain``)
    or shuts down; past it the rest is cut short. The process exits at most
    ``api.live.drain.STOP_AFTER_DRAIN_SECONDS`` (10) later: give it this plus 10 s before a
    SIGKILL."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from ``LIVERELAY_*`` variables, then apply ``overrides``."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = parse_env_value(f.name, f.type, raw)
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        check_settings(self)

    @property
    def s3_location(self) -> tuple[str, str] | None:
        """``(bucket, key prefix)`` from ``storage_url`` when it names S3, else ``None``. The
        prefix is empty or ends with ``/``."""
        if self.storage_url is None:
            return None
        url = urlsplit(self.storage_url)
        if url.scheme != "s3":
            raise SettingsError(
                f"LIVERELAY_STORAGE_URL={self.storage_url!r} must be s3://bucket[/prefix] "
                "(unset keeps recordings on local disk)"
            )
        bucket, prefix = url.netloc, url.path.strip("/")
        if not _BUCKET.fullmatch(bucket) or url.query or url.fragment:
            raise SettingsError(
                f"LIVERELAY_STORAGE_URL={self.storage_url!r}: {bucket!r} is not a bucket name "
                "(3-63 characters: lowercase letters, digits, dots, hyphens)"
            )
        if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
            raise SettingsError(
                f"LIVERELAY_STORAGE_URL={self.storage_url!r}: the prefix has an empty, '.' or "
                "'..' part"
            )
        return bucket, f"{prefix}/" if prefix else ""

    @property
    def trusted_proxy_networks(self) -> tuple[IPNetwork, ...]:
        """``trusted_proxies`` parsed."""
        return parse_networks(self.trusted_proxies)

    @property
    def upload_backlog_dir(self) -> Path:
        """Where recorded segments wait for their upload to object storage."""
        return self.data_dir / "upload-backlog"

    @property
    def database_url_value(self) -> str:
        """The database URL in clear (for the engine only; never log it)."""
        if self.database_url is not None:
            return self.database_url.value
        return f"sqlite+aiosqlite:///{(self.data_dir / 'liverelay.db').resolve()}"

    @property
    def live_dir(self) -> Path:
        """Where live HLS output is written, one directory per stream id."""
        return self.data_dir / "live"

    @property
    def recordings_dir(self) -> Path:
        """Where recordings are kept, one directory per recording id."""
        return self.data_dir / "recordings"

    def rtmp_base_url(self, bound_port: int | None = None) -> str:
        """Public base of RTMP URLs (no trailing slash)."""
        port = bound_port if bound_port is not None else self.rtmp_port
        return _base_url(self.public_rtmp_url, "rtmp", self.rtmp_host, port, 1935)

    @property
    def rtmps_enabled(self) -> bool:
        """Whether the RTMPS ingest listens."""
        return self.rtmps_port != -1

    def rtmps_base_url(self, bound_port: int | None = None) -> str | None:
        """Public base of RTMPS URLs (no trailing slash); ``None`` when RTMPS is off."""
        if not self.rtmps_enabled:
            return None
        port = bound_port if bound_port is not None else self.rtmps_port
        return _base_url(self.public_rtmps_url, "rtmps", self.rtmps_listen_host, port, 443)

    @property
    def rtmps_listen_host(self) -> str:
        """Address the RTMPS ingest listens on."""
        return self.rtmp_host if self.rtmps_host is None else self.rtmps_host

    def http_base_url(self, bound_port: int | None = None) -> str:
        """Public base of HTTP playback URLs (no trailing slash)."""
        if self.public_http_url:
            return self.public_http_url.rstrip("/")
        port = bound_port if bound_port is not None else self.http_port
        return f"http://{_public_host(self.http_host)}:{port}"


def _base_url(public: str | None, scheme: str, listen_host: str, port: int, default: int) -> str:
    """``public`` without its trailing slash, else ``scheme://host[:port]`` of the listener (the
    port left out when it is the scheme's ``default``)."""
    if public:
        return public.rstrip("/")
    host = _public_host(listen_host)
    return f"{scheme}://{host}" if port == default else f"{scheme}://{host}:{port}"


def _public_host(listen_host: str) -> str:
    return "localhost" if listen_host in ("0.0.0.0", "::", "") else listen_host
