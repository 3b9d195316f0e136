"""The restream output's command line, name, CA setting, target resolution and end (no network:
a fake resolver stands in for DNS, and a small executable fixture that prints ffmpeg-style
progress and reads its stdin to EOF stands in for ffmpeg; see tests/e2e for real ffmpeg)."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from config import Settings, SettingsError
from ingest.authorizer import RestreamTarget
from ingest.hub import StreamHub
from tests.conftest import HOSTILE_HOSTS
from tests.fakes import PUBLIC_V4, PUBLIC_V6, FakeResolver
from tests.polling import eventually
from workers.egress import TargetAddressRefused
from workers.restream import CONNECT_FAILED, RestreamOutput, coarse_error
from workers.restream_target import TargetNotResolved
from workers.supervisor import OutputState, PermanentOutputError

KEY = "live_123456_SeCrEtKeY"
FIXTURES = Path(__file__).parent / "fixtures"


def output(settings: Settings, url: str, resolver: FakeResolver | None = None) -> RestreamOutput:
    hub = StreamHub("e" * 24, queue_bytes=100_000)
    target = RestreamTarget("t9", url)
    return RestreamOutput(
        settings, ffmpeg="ffmpeg", hub=hub, target=target, resolve=resolver or FakeResolver()
    )


def test_ca_file_setting_must_exist(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="LIVERELAY_RESTREAM_CA_FILE"):
        Settings.from_env({"LIVERELAY_RESTREAM_CA_FILE": str(tmp_path / "missing.pem")})
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = Settings.from_env({"LIVERELAY_RESTREAM_CA_FILE": str(bundle)})
    assert settings.restream_ca_file == str(bundle)


async def test_ca_file_applies_to_rtmps_targets_only(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("x")
    settings = Settings(data_dir=tmp_path, restream_ca_file=str(bundle), output_stall_seconds=7)
    tls_relay = output(settings, f"rtmps://live.example.com:443/app/{KEY}")
    rtmps = tls_relay._argv(await tls_relay.plan())
    assert rtmps[-5:] == ["-tls_verify", "1", "-ca_file", str(bundle), rtmps[-1]]
    assert rtmps[rtmps.index("-rw_timeout") + 1] == "7000000"
    relay = output(settings, f"rtmp://live.example.com/app/{KEY}")
    rtmp = relay._argv(await relay.plan())
    assert "-ca_file" not in rtmp and "-tls_verify" not in rtmp


def test_names_and_errors_never_show_the_key(tmp_path: Path) -> None:
    relay = output(Settings(data_dir=tmp_path), f"rtmp://user:pw@live.example.com/app/{KEY}")
    assert relay.name == f"{'e' * 24}/restream:t9"
    assert KEY not in relay.name
    said = relay.supervisor._short(f"rtmp://user:pw@live.example.com/app/{KEY}: refused")
    assert KEY not in said and "pw" not in said
    assert said == "rtmp://***@live.example.com/app/***: refused"


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("rtmp://10.0.0.5.nip.io/app/k", TargetAddressRefused),
        ("rtmps://10.0.0.5.nip.io/app/k", TargetAddressRefused),
        ("rtmp://mixed.example.com/app/k", TargetAddressRefused),
        ("rtmp://mapped.example.com:1935/app/k", TargetAddressRefused),
        ("rtmp://nowhere.example.com/app/k", TargetNotResolved),
        ("rtmps://nowhere.example.com/app/k", TargetNotResolved),
    ],
)
async def test_names_are_resolved_and_judged_before_every_start(
    tmp_path: Path, url: str, error: type[Exception]
) -> None:
    resolver = FakeResolver()
    relay = output(Settings(data_dir=tmp_path), url, resolver)
    for attempt in (1, 2):
        with pytest.raises(error) as raised:
            await relay.plan(attempt)
        assert str(raised.value) in (
            "target host resolves to a private address",
            "target host does not resolve",
        )
    assert len(resolver.asked) == 2


@pytest.mark.parametrize("host", HOSTILE_HOSTS)
@pytest.mark.parametrize("scheme", ["rtmp", "RTMPS"])
async def test_hostile_spellings_stored_earlier_are_refused_without_a_lookup(
    tmp_path: Path, scheme: str, host: str
) -> None:
    resolver = FakeResolver()
    relay = output(Settings(data_dir=tmp_path), f"{scheme}://{host}:1935/live/{KEY}", resolver)
    with pytest.raises(TargetAddressRefused):
        await relay.plan()
    assert resolver.asked == []


async def test_a_target_without_a_valid_host_fails_for_good(tmp_path: Path) -> None:
    relay = output(Settings(data_dir=tmp_path), f"rtmp://a\u200bb.example.com/live/{KEY}")
    with pytest.raises(PermanentOutputError, match="target URL has no valid host"):
        await relay.plan()


async def test_rtmp_names_are_pinned_to_a_checked_address_with_the_original_tc_url(
    tmp_path: Path,
) -> None:
    relay = output(Settings(data_dir=tmp_path), f"RTMP://u:pw@Live.Example.com/app/{KEY}")
    first, second, third = [await relay.plan(attempt) for attempt in (1, 2, 3)]
    assert first.url == f"rtmp://u:pw@{PUBLIC_V4}/app/{KEY}"
    assert second.url == f"rtmp://u:pw@[{PUBLIC_V6}]/app/{KEY}"
    assert third == first
    assert first.tc_url == second.tc_url == "rtmp://live.example.com:1935/app"
    argv = relay._argv(second)
    assert argv[-3:] == ["-rtmp_tcurl", "rtmp://live.example.com:1935/app", second.url]


async def test_rtmps_names_stay_names_after_the_check(tmp_path: Path) -> None:
    resolver = FakeResolver()
    relay = output(Settings(data_dir=tmp_path), f"RTMPS://live.example.com/app/{KEY}", resolver)
    plan = await relay.plan()
    assert (plan.url, plan.tc_url) == (f"rtmps://live.example.com/app/{KEY}", None)
    assert resolver.asked == [("live.example.com", 443)]
    assert "-rtmp_tcurl" not in relay._argv(plan)


async def test_ip_literal_targets_are_judged_without_a_lookup(tmp_path: Path) -> None:
    resolver = FakeResolver()
    settings = Settings(data_dir=tmp_path)
    plan = await output(settings, f"rtmp://{PUBLIC_V4}:1935/a/{KEY}", resolver).plan()
    assert (plan.url, plan.tc_url) == (f"rtmp://{PUBLIC_V4}:1935/a/{KEY}", None)
    with pytest.raises(TargetAddressRefused, match="loopback, private or link-local"):
        await output(settings, f"rtmp://[::ffff:7f00:1]/a/{KEY}", resolver).plan()
    assert resolver.asked == []


async def test_with_private_targets_allowed_names_are_pinned_but_not_judged(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, allow_private_targets=True)
    resolver = FakeResolver()
    plan = await output(settings, f"rtmp://10.0.0.5.nip.io/live/{KEY}", resolver).plan()
    assert (plan.url, plan.tc_url) == (
        f"rtmp://10.0.0.5/live/{KEY}",
        "rtmp://10.0.0.5.nip.io:1935/live",
    )
    plan = await output(settings, f"rtmps://10.0.0.5.nip.io/live/{KEY}", resolver).plan()
    assert plan.url == f"rtmps://10.0.0.5.nip.io/live/{KEY}"
    assert resolver.asked == [("10.0.0.5.nip.io", 1935)]  # rtmps: ffmpeg resolves


async def test_a_refused_target_retries_with_a_clear_error_and_starts_no_ffmpeg(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, output_backoff_max_seconds=0.05)
    relay = output(settings, f"rtmp://10.0.0.5.nip.io/live/{KEY}")
    relay.start()
    try:
        await eventually(lambda: relay.status().retries >= 2)
    finally:
        await relay.stop()
    status = relay.status()
    assert status.last_error == "target host resolves to a private address"
    assert relay.supervisor.process is None


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        ("exited with code 1: Error opening output files: Connection refused", CONNECT_FAILED),
        ("exited with code 1: Error opening output files: Connection timed out", CONNECT_FAILED),
        ("exited with code 1: Error opening output files: End of file", CONNECT_FAILED),
        ("exited with code 1: Error opening output files: No route to host", CONNECT_FAILED),
        ("exited with code 1: [tcp] Connection to tcp://1.2.3.4:1935 failed: ...", CONNECT_FAILED),
        ("no progress for 15 s", CONNECT_FAILED),
        ("no progress for 15 s: [flv] Failed to update header", CONNECT_FAILED),
        ("target host resolves to a private address", "target host resolves to a private address"),
        ("target host does not resolve", "target host does not resolve"),
        (
            "exited with code 1: Server error: Bad stream key",
            "exited with code 1: Server error: Bad stream key",
        ),
        (None, None),
    ],
)
def test_connection_failures_read_the_same_to_tenants(error: str | None, shown: str | None) -> None:
    assert coarse_error(error) == shown


def test_the_status_is_coarse_only_where_private_targets_are_refused(tmp_path: Path) -> None:
    refused = "exited with code 1: Error opening output files: Connection refused"
    for allowed, shown in ((False, CONNECT_FAILED), (True, refused)):
        relay = output(Settings(data_dir=tmp_path, allow_private_targets=allowed), "rtmp://h/a/k")
        relay.supervisor._machine.last_error = refused
        assert relay.status().last_error == shown
    assert OutputState.IDLE is relay.status().state


async def test_a_live_restream_finishes_on_its_own_once_the_publish_ended(tmp_path: Path) -> None:
    script = tmp_path / "ffmpeg"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {FIXTURES / 'progress.py'} advance\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    settings = Settings(data_dir=tmp_path, allow_private_targets=True)
    hub = StreamHub("e" * 24, queue_bytes=100_000)
    relay = RestreamOutput(
        settings,
        ffmpeg=str(script),
        hub=hub,
        target=RestreamTarget("t9", f"rtmp://127.0.0.1/a/{KEY}"),
    )
    relay.start()
    try:
        await eventually(lambda: relay.status().state is OutputState.LIVE)
        hub.close()  # the publish ended: the feed drains, ffmpeg gets EOF and flushes
        await eventually(lambda: relay.status().state not in (OutputState.LIVE,), within=5)
        assert relay.status().state.value == "finished"
        assert relay.supervisor.process is not None
        assert relay.supervisor.process.returncode == 0  # ended by EOF, not by a signal
    finally:
        await relay.stop(drain_timeout=5)
    assert relay.status().state.value == "finished"  # a stop keeps the end it reached
