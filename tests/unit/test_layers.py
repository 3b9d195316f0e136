"""The package layering (``config <- ingest <- workers <- api``) and the sans-IO rule for
``ingest.rtmp``, as the import-linter contracts in ``pyproject.toml`` state them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("config", "ingest", "workers", "api")
LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports())"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter over the packages under ``root`` with ``root``'s ``pyproject.toml``,
    in a child process: import-linter reconfigures logging, which would blind later tests' log
    captures."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-c", LINT], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def test_import_contracts_are_kept() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rtmp_protocol_may_not_log_or_read_the_clock(tmp_path: Path) -> None:
    """The sans-IO protocol reports what happened (events, ``RTMPProtocolError``) and takes
    time as an argument: a module of ``ingest.rtmp`` importing ``logging`` or ``time`` breaks
    the contract."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "ingest" / "rtmp" / "impure.py").write_text("import logging\nimport time\n")
    result = lint_imports(tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "ingest.rtmp.impure -> logging" in output
    assert "ingest.rtmp.impure -> time" in output
