"""The typed session status the media side hands the API, and the one place the API maps it to
its JSON schema (``currentSession``)."""

from __future__ import annotations

from api.schemas.current_session import current_session_output, output_state_name
from ingest.stats import AudioTrack, VideoTrack
from workers.output_state import OutputState, OutputStatus
from workers.status import OutputReport, SessionStatus


def output(name: str, state: OutputState, error: str | None = None) -> OutputStatus:
    return OutputStatus(name, state, 1_700_000_000.0, 1, 2, error, ("a line",))


def test_the_status_maps_to_the_camel_case_schema_once() -> None:
    status = SessionStatus(
        session_id="65a1b2c3d4e5f60718293a4b",
        started_at=1_700_000_000.25,
        client_address="203.0.113.9:41000",
        encoder="obs-output module (libobs version 30.0.0)",
        video=VideoTrack("h264", 1280, 720, 30.0, 2.0),
        audio=AudioTrack("aac", 48_000, 2),
        bitrate_kbps=2500.5,
        bytes_in=123_456,
        outputs=(
            OutputReport(output("e" * 24 + "/hls", OutputState.LIVE), 0),
            OutputReport(output("e" * 24 + "/restream:t1", OutputState.RETRYING, "refused"), 7),
        ),
        reconnecting=True,
        reconnects=1,
        renditions=("source", "480p"),
    )
    rendered = current_session_output(status)
    assert rendered is not None
    assert rendered.model_dump(by_alias=True) == {
        "id": "65a1b2c3d4e5f60718293a4b",
        "startedAt": "2023-11-14T22:13:20.250Z",
        "clientAddress": "203.0.113.9:41000",
        "encoder": "obs-output module (libobs version 30.0.0)",
        "video": {
            "codec": "h264",
            "width": 1280,
            "height": 720,
            "fps": 30.0,
            "keyframeInterval": 2.0,
        },
        "audio": {"codec": "aac", "sampleRate": 48_000, "channels": 2},
        "bitrateKbps": 2500.5,
        "bytesIn": 123_456,
        "outputs": [
            {"name": "hls", "state": "live", "droppedFrames": 0, "lastError": None},
            {
                "name": "restream:t1",
                "state": "retrying",
                "droppedFrames": 7,
                "lastError": "refused",
            },
        ],
        "reconnecting": True,
        "reconnects": 1,
        "renditions": ["source", "480p"],
        "transcodeSpeed": None,
        "droppedRenditions": [],
    }
    assert current_session_output(None) is None


def test_every_output_state_has_an_api_name_and_finished_reads_stopped() -> None:
    names = {state: output_state_name(state) for state in OutputState}
    assert names[OutputState.FINISHED] == "stopped"
    assert {s: n for s, n in names.items() if s is not OutputState.FINISHED} == {
        s: s.value for s in OutputState if s is not OutputState.FINISHED
    }
