"""The README's configuration table stays true to the settings object."""

import dataclasses
import re
from pathlib import Path

from config.settings import ENV_PREFIX, Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented_and_every_documented_variable_exists() -> None:
    text = README.read_text(encoding="utf-8")
    table = {m.group(1) for m in re.finditer(r"^\| `(LIVERELAY_[A-Z_]+)` \|", text, re.M)}
    fields = {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
    assert fields - table == set(), "settings missing from the README table"
    assert table - fields == set(), "README documents variables that do not exist"


def test_every_setting_has_a_docstring() -> None:
    source = Path(__import__("config.settings").settings.__file__).read_text(encoding="utf-8")
    for field in dataclasses.fields(Settings):
        pattern = rf"\n    {field.name}: [^\n]+\n    \"\"\""
        assert re.search(pattern, source), f"setting {field.name} has no docstring"
