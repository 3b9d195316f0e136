"""The rate limit of TLS handshakes per client address (:class:`ingest.handshake_rate.
HandshakeRate`), driven by a fake clock, and its settings."""

from __future__ import annotations

import pytest

from config.settings import Settings, SettingsError
from ingest.handshake_rate import HandshakeRate
from ingest.limits import CloseReason
from tests.fakes import FakeClock


def admitted(rate: HandshakeRate, address: str, count: int) -> list[bool]:
    return [rate.admit(address) is None for _ in range(count)]


def test_a_burst_is_admitted_then_refused() -> None:
    rate = HandshakeRate(1.0, 3, clock=FakeClock())
    assert admitted(rate, "192.0.2.1", 5) == [True, True, True, False, False]
    refusal = rate.admit("192.0.2.1")
    assert refusal is not None
    assert refusal.reason is CloseReason.TLS_HANDSHAKE_THROTTLED
    assert "3 TLS handshakes" in str(refusal)


def test_the_bucket_refills_at_the_rate_up_to_the_burst() -> None:
    clock = FakeClock()
    rate = HandshakeRate(0.5, 2, clock=clock)
    assert admitted(rate, "192.0.2.1", 3) == [True, True, False]
    clock.advance(1.9)
    assert admitted(rate, "192.0.2.1", 1) == [False]
    clock.advance(0.1)
    assert admitted(rate, "192.0.2.1", 2) == [True, False]
    clock.advance(3600)  # a long pause gives back the burst, no more
    assert admitted(rate, "192.0.2.1", 3) == [True, True, False]


def test_a_refusal_costs_nothing() -> None:
    """Refused attempts do not push the next token further away."""
    clock = FakeClock()
    rate = HandshakeRate(1.0, 1, clock=clock)
    assert admitted(rate, "192.0.2.1", 1 + 50) == [True] + [False] * 50
    clock.advance(1.0)
    assert admitted(rate, "192.0.2.1", 2) == [True, False]


def test_addresses_have_their_own_buckets() -> None:
    rate = HandshakeRate(1.0, 2, clock=FakeClock())
    assert admitted(rate, "192.0.2.1", 3) == [True, True, False]
    assert admitted(rate, "192.0.2.2", 2) == [True, True]


def test_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() -> None:
    rate = HandshakeRate(1.0, 2, clock=FakeClock())
    assert admitted(rate, "2001:db8:1:2::1", 1) == [True]
    assert admitted(rate, "2001:db8:1:2:ffff::9", 2) == [True, False]
    assert admitted(rate, "2001:db8:1:3::1", 1) == [True]  # another /64
    assert admitted(rate, "192.0.2.7", 1) == [True]
    assert admitted(rate, "::ffff:192.0.2.7", 2) == [True, False]


def test_a_failed_handshake_costs_twice() -> None:
    clock = FakeClock()
    rate = HandshakeRate(1.0, 4, clock=clock)
    assert admitted(rate, "192.0.2.1", 2) == [True, True]
    rate.failed("192.0.2.1")
    rate.failed("192.0.2.1")
    assert admitted(rate, "192.0.2.1", 1) == [False]
    clock.advance(1.0)
    assert admitted(rate, "192.0.2.1", 2) == [True, False]


def test_failures_never_leave_a_debt() -> None:
    """However many fail, the address is admitted again one refill interval later."""
    clock = FakeClock()
    rate = HandshakeRate(1.0, 2, clock=clock)
    for _ in range(20):
        rate.failed("192.0.2.1")
    assert admitted(rate, "192.0.2.1", 1) == [False]
    clock.advance(1.0)
    assert admitted(rate, "192.0.2.1", 1) == [True]


def test_a_rate_of_zero_turns_the_limit_off() -> None:
    rate = HandshakeRate(0.0, 1, clock=FakeClock())
    rate.failed("192.0.2.1")
    assert admitted(rate, "192.0.2.1", 100) == [True] * 100
    assert len(rate) == 0


def test_memory_is_bounded_and_full_buckets_are_forgotten_first() -> None:
    clock = FakeClock()
    rate = HandshakeRate(1.0, 2, clock=clock, max_addresses=3)
    for host in ("192.0.2.1", "192.0.2.2"):
        rate.admit(host)
    clock.advance(5)  # both full again: the same as never seen
    assert admitted(rate, "192.0.2.3", 2) == [True, True]
    assert admitted(rate, "192.0.2.4", 1) == [True]
    assert len(rate) == 2
    for host in ("192.0.2.5", "192.0.2.6"):
        rate.admit(host)
    assert len(rate) == 3  # the least recently charged (192.0.2.3) made room
    assert admitted(rate, "192.0.2.4", 2) == [True, False]


def test_nonsense_is_refused() -> None:
    for rate, burst in ((-1.0, 1), (1.0, 0)):
        with pytest.raises(ValueError):
            HandshakeRate(rate, burst, clock=FakeClock())


# -- settings ---------------------------------------------------------------------------------


def test_the_settings_have_defaults_and_come_from_the_environment() -> None:
    defaults = Settings()
    assert defaults.rtmps_handshake_rate == 1.0
    assert defaults.rtmps_handshake_burst == 10
    settings = Settings.from_env(
        {"LIVERELAY_RTMPS_HANDSHAKE_RATE": "0.2", "LIVERELAY_RTMPS_HANDSHAKE_BURST": "4"}
    )
    assert (settings.rtmps_handshake_rate, settings.rtmps_handshake_burst) == (0.2, 4)
    assert Settings(rtmps_handshake_rate=0).rtmps_handshake_rate == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("rtmps_handshake_rate", -0.5),
        ("rtmps_handshake_rate", float("nan")),
        ("rtmps_handshake_burst", 0),
    ],
)
def test_the_settings_refuse_nonsense(name: str, value: float) -> None:
    with pytest.raises(SettingsError, match=f"LIVERELAY_{name.upper()}"):
        Settings(**{name: value})  # type: ignore[arg-type]
