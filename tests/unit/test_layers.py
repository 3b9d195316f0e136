"""The package layering (``config <- ingest <- workers <- api``) and the sans-IO rule for
``ingest.rtmp``, as the import-linter contracts in ``pyproject.toml`` state them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept() -> None:
    # In a child process: import-linter reconfigures logging, which would blind later tests'
    # log captures.
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports())"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
