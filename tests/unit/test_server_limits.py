"""The RTMP listener's limiters, driven by a fake clock."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from config.settings import Settings, SettingsError
from ingest.limits import AddressConnections, AuthFailureThrottle, CloseReason
from ingest.ratelimit import WarningRateLimiter
from ingest.server import RTMPServer
from tests.fakes import FakeClock, StubAdmission
from tests.polling import eventually

# -- connections per address --------------------------------------------------------------------


def test_address_connections_refuse_past_the_limit_and_free_on_release() -> None:
    limit = AddressConnections(2)
    assert limit.acquire("10.0.0.1") and limit.acquire("10.0.0.1")
    assert not limit.acquire("10.0.0.1")
    assert limit.acquire("10.0.0.2")  # other addresses are not affected
    assert limit.open("10.0.0.1") == 2
    limit.release("10.0.0.1")
    assert limit.acquire("10.0.0.1")


def test_address_connections_forget_idle_addresses() -> None:
    limit = AddressConnections(3)
    for address in ("a", "b", "a"):
        limit.acquire(address)
    for address in ("a", "b", "a"):
        limit.release(address)
    assert len(limit) == 0
    limit.release("never-seen")  # harmless
    assert len(limit) == 0 and limit.open("a") == 0


def test_address_connections_need_a_positive_limit() -> None:
    with pytest.raises(ValueError, match="per_address must be positive"):
        AddressConnections(0)


# -- refused stream keys --------------------------------------------------------------------------


def test_throttle_blocks_after_the_limit_within_a_minute() -> None:
    clock = FakeClock()
    throttle = AuthFailureThrottle(3, clock=clock)
    assert [throttle.record_failure("1.2.3.4") for _ in range(3)] == [False, False, True]
    assert throttle.blocked("1.2.3.4")
    assert not throttle.blocked("5.6.7.8")


def test_throttle_lasts_until_the_oldest_failure_leaves_the_window() -> None:
    clock = FakeClock()
    throttle = AuthFailureThrottle(3, clock=clock)
    throttle.record_failure("1.2.3.4")
    clock.advance(20)
    throttle.record_failure("1.2.3.4")
    throttle.record_failure("1.2.3.4")
    assert throttle.retry_after("1.2.3.4") == pytest.approx(40)
    clock.advance(39.9)
    assert throttle.blocked("1.2.3.4")
    clock.advance(0.1)
    assert not throttle.blocked("1.2.3.4")  # two failures left in the last minute
    assert throttle.record_failure("1.2.3.4")  # the third blocks again, for 20 s this time
    assert throttle.retry_after("1.2.3.4") == pytest.approx(20)


def test_failures_spread_over_more_than_a_minute_never_block() -> None:
    clock = FakeClock()
    throttle = AuthFailureThrottle(3, clock=clock)
    for _ in range(20):
        assert not throttle.record_failure("1.2.3.4")
        clock.advance(30.1)


def test_throttle_off_with_zero() -> None:
    throttle = AuthFailureThrottle(0, clock=FakeClock())
    assert not any(throttle.record_failure("1.2.3.4") for _ in range(100))
    assert not throttle.blocked("1.2.3.4") and len(throttle) == 0


def test_throttle_memory_is_bounded() -> None:
    clock = FakeClock()
    throttle = AuthFailureThrottle(2, clock=clock, max_addresses=3)
    for address in ("a", "b", "c"):
        throttle.record_failure(address)
    throttle.record_failure("a")  # "a" failed most recently: "b" is now the oldest
    throttle.record_failure("d")
    assert len(throttle) == 3
    assert throttle.blocked("a")
    assert throttle.record_failure("c")  # "c" was kept (its first failure still counts)
    clock.advance(61)
    throttle.record_failure("e")  # the expired ones go first
    assert len(throttle) == 1


# -- settings and reason names --------------------------------------------------------------------


def test_reason_names_are_stable() -> None:
    assert {reason.value for reason in CloseReason} == {
        "connection_limit",
        "address_limit",
        "handshake_timeout",
        "idle_timeout",
        "protocol_error",
        "bitrate_limit",
        "slow_reader",
        "bad_app",
        "bad_key",
        "auth_throttled",
        "already_publishing",
        "play_refused",
        "auth_unavailable",
        "live_elsewhere",
        "draining",
        "shutdown",
        "proxy_header_missing",
        "proxy_header_invalid",
        "proxy_header_untrusted",
        "tls_handshake_failed",
        "tls_handshake_throttled",
    }


def test_limit_settings_have_safe_defaults_and_come_from_the_environment() -> None:
    defaults = Settings()
    assert defaults.rtmp_max_connections_per_address == 10
    assert defaults.rtmp_auth_failures_per_minute == 10
    assert defaults.rtmp_max_publish_kbps == 0
    assert defaults.rtmp_max_send_buffer == 1024 * 1024
    settings = Settings.from_env({"LIVERELAY_RTMP_AUTH_FAILURES_PER_MINUTE": "3"})
    assert settings.rtmp_auth_failures_per_minute == 3


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("rtmp_max_connections_per_address", 0),
        ("rtmp_auth_failures_per_minute", -1),
        ("rtmp_max_publish_kbps", -1),
        ("rtmp_max_send_buffer", 0),
    ],
)
def test_limit_settings_refuse_nonsense(name: str, value: int) -> None:
    with pytest.raises(SettingsError, match=f"LIVERELAY_{name.upper()}"):
        Settings(**{name: value})  # type: ignore[arg-type]


# -- warnings at a limited rate ---------------------------------------------------------------


def test_rate_limited_warnings_count_what_they_hold_back() -> None:
    clock = FakeClock()
    limiter = WarningRateLimiter(10.0, clock=clock)
    assert limiter.allow("address_limit") == 0
    assert [limiter.allow("address_limit") for _ in range(5)] == [None] * 5
    assert limiter.allow("connection_limit") == 0  # each key has its own interval
    clock.advance(9.9)
    assert limiter.allow("address_limit") is None
    clock.advance(0.1)
    assert limiter.allow("address_limit") == 6
    assert limiter.allow("address_limit") is None
    clock.advance(10)
    assert limiter.allow("address_limit") == 1


async def test_refused_connections_log_one_warning_per_reason_and_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ingest.server")
    clock = FakeClock()
    settings = Settings(
        data_dir=tmp_path, rtmp_host="127.0.0.1", rtmp_port=0, rtmp_max_connections_per_address=1
    )
    server = RTMPServer(settings, admission=StubAdmission(), clock=clock)
    await server.start()
    try:
        _, held = await asyncio.open_connection("127.0.0.1", server.port)
        await eventually(lambda: server.connection_count == 1)
        await refuse(server, 30)
        clock.advance(10)
        await refuse(server, 5)
        held.close()
    finally:
        await server.close()
    assert server.rejected == {"address_limit": 35}
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 2, lines
    assert lines[0].endswith("1 open from its address")
    assert lines[1].endswith("1 open from its address (29 more since the last warning)")
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 33


async def refuse(server: RTMPServer, count: int) -> None:
    """Open ``count`` connections the per-address cap refuses; wait for each close."""
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await reader.read() == b""
        writer.close()
