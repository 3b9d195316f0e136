"""``liverelay serve`` names another installed distribution that provides one of its top-level
packages (``docs/decisions.md``, decision 7)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config.distribution import describe_shared, shared_top_level_packages
from tests.e2e.serve_process import Service


def install_fake_distribution(site: Path, name: str, files: list[str]) -> None:
    """A distribution's metadata as pip writes it: ``*.dist-info`` with ``METADATA`` and a
    ``RECORD`` listing the files it installed (metadata only: the files themselves would
    shadow ours on the import path)."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in files))


def test_this_environment_has_no_other_provider() -> None:
    assert shared_top_level_packages() == {}


def test_a_distribution_installing_config_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_fake_distribution(
        tmp_path, "Other_Project", ["config/__init__.py", "config/base.py", "other/__init__.py"]
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    shared = shared_top_level_packages()

    assert shared == {"config": ["Other_Project"]}
    message = describe_shared(shared)
    assert "'config' (also from Other_Project)" in message
    assert "own virtual environment" in message


def test_our_own_distribution_under_another_spelling_is_not_a_collision() -> None:
    provided = {"api": ["liverelay", "LiveRelay"], "workers": ["liverelay"], "other": ["x"]}
    assert shared_top_level_packages(provided) == {}
    assert shared_top_level_packages({"ingest": ["liverelay", "b", "a", "a"]}) == {
        "ingest": ["a", "b"]
    }


@pytest.mark.e2e
async def test_serve_warns_at_start_up(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_fake_distribution(site, "other-project", ["api/__init__.py"])
    (tmp_path / "data").mkdir()
    service = Service(tmp_path / "data")
    service.env["PYTHONPATH"] = str(site)
    try:
        await service.start()
    finally:
        await service.stop()
    log = service.log.read_text()
    assert "'api' (also from other-project)" in log, log


def test_the_app_on_local_disk_does_not_load_the_s3_client() -> None:
    """botocore and aiobotocore cost every node about 13 MB of memory; a node whose recordings
    stay on local disk (the default) never loads them."""
    probe = (
        "import sys, api.app, api.cli, workers.recording_storages;"
        "print(sorted(m for m in ('botocore', 'aiobotocore') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stdout
