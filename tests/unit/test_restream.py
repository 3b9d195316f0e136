"""The restream output's command line, name and CA setting (no network: see tests/e2e)."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import Settings, SettingsError
from ingest.authorizer import RestreamTarget
from ingest.hub import StreamHub
from workers.restream import RestreamOutput

KEY = "live_123456_SeCrEtKeY"


def output(settings: Settings, url: str) -> RestreamOutput:
    hub = StreamHub("e" * 24, queue_bytes=100_000)
    return RestreamOutput(settings, ffmpeg="ffmpeg", hub=hub, target=RestreamTarget("t9", url))


def test_ca_file_setting_must_exist(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="LIVERELAY_RESTREAM_CA_FILE"):
        Settings.from_env({"LIVERELAY_RESTREAM_CA_FILE": str(tmp_path / "missing.pem")})
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = Settings.from_env({"LIVERELAY_RESTREAM_CA_FILE": str(bundle)})
    assert settings.restream_ca_file == str(bundle)


def test_ca_file_applies_to_rtmps_targets_only(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("x")
    settings = Settings(data_dir=tmp_path, restream_ca_file=str(bundle), output_stall_seconds=7)
    rtmps = output(settings, f"rtmps://live.example.com:443/app/{KEY}")._argv()
    assert rtmps[-5:] == ["-tls_verify", "1", "-ca_file", str(bundle), rtmps[-1]]
    assert rtmps[rtmps.index("-rw_timeout") + 1] == "7000000"
    rtmp = output(settings, f"rtmp://live.example.com/app/{KEY}")._argv()
    assert "-ca_file" not in rtmp and "-tls_verify" not in rtmp


def test_names_and_errors_never_show_the_key(tmp_path: Path) -> None:
    relay = output(Settings(data_dir=tmp_path), f"rtmp://user:pw@live.example.com/app/{KEY}")
    assert relay.name == f"{'e' * 24}/restream:t9"
    assert KEY not in relay.name
    said = relay.supervisor._short(f"rtmp://user:pw@live.example.com/app/{KEY}: refused")
    assert KEY not in said and "pw" not in said
    assert said == "rtmp://***@live.example.com/app/***: refused"
