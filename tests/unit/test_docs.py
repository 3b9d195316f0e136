"""The README's configuration table stays true to the settings object, and the deploy files
and operations guide to the shutdown bound."""

import dataclasses
import re
from pathlib import Path

from api.live.drain import STOP_AFTER_DRAIN_SECONDS
from config.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DEPLOY = ROOT / "deploy"
SHUTDOWN_SECONDS = Settings().drain_seconds + STOP_AFTER_DRAIN_SECONDS
"""The longest a stop takes with the default settings: the drain, then the rest."""


def test_every_setting_is_documented_and_every_documented_variable_exists() -> None:
    text = README.read_text(encoding="utf-8")
    table = {m.group(1) for m in re.finditer(r"^\| `(LIVERELAY_[A-Z0-9_]+)` \|", text, re.M)}
    fields = {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
    assert fields - table == set(), "settings missing from the README table"
    assert table - fields == set(), "README documents variables that do not exist"


def test_every_setting_has_a_docstring() -> None:
    source = Path(__import__("config.settings").settings.__file__).read_text(encoding="utf-8")
    for field in dataclasses.fields(Settings):
        pattern = rf"\n    {field.name}: [^\n]+\n    \"\"\""
        assert re.search(pattern, source), f"setting {field.name} has no docstring"


def test_the_systemd_unit_stops_liverelay_first_and_waits_for_it() -> None:
    """SIGTERM must reach liverelay alone (it stops its ffmpeg children in order: their last
    segments and recordings are written), and systemd must wait past the shutdown bound."""
    unit = _unit_settings(DEPLOY / "liverelay.service")
    assert unit["KillMode"] == "mixed"
    assert unit["KillSignal"] == "SIGTERM"
    assert int(unit["TimeoutStopSec"]) >= SHUTDOWN_SECONDS


def test_container_stop_timeouts_are_documented_above_the_shutdown_bound() -> None:
    """Docker waits 10 s by default before SIGKILL: less than the 30 s a stop may take."""
    grace = int(SHUTDOWN_SECONDS)
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    for text in (operations, dockerfile):
        assert f"docker stop -t {grace}" in text or f"--stop-timeout {grace}" in text
    for setting in (
        f"stop_grace_period: {grace}s",
        f"terminationGracePeriodSeconds: {grace}",
        "KillMode=mixed",
        f"TimeoutStopSec={grace}",
    ):
        assert setting in operations, setting


def _unit_settings(path: Path) -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith(("#", ";")):
            settings[name.strip()] = value.strip()
    return settings


def _readme_command(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^{heading}.*?```sh\n([^\n]+)\n```", text, re.S | re.M)
    assert match, f"no command after {heading!r} in the README"
    return match.group(1)


def test_ci_runs_exactly_the_readme_commands() -> None:
    setup = _readme_command("Set-up")
    tests = _readme_command("Tests")
    assert "npm ci" in setup  # the console's hls.js, pinned in package-lock.json
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert setup in lines
    assert tests in lines


def test_hls_js_is_pinned_with_its_integrity_hash() -> None:
    import json

    package = json.loads((ROOT / "package.json").read_text(encoding="utf-8"))
    version = package["dependencies"]["hls.js"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), "hls.js must be pinned to an exact version"
    lock = json.loads((ROOT / "package-lock.json").read_text(encoding="utf-8"))
    entry = lock["packages"]["node_modules/hls.js"]
    assert entry["version"] == version
    assert entry["integrity"].startswith("sha512-")
    assert "node_modules/" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert "npm ci" in (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
