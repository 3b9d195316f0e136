"""Value types and parsing the settings share: secrets, the error, environment strings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ENV_PREFIX = "LIVERELAY_"


class SettingsError(ValueError):
    """A setting from the environment could not be parsed; the message names the variable."""


@dataclass(frozen=True)
class Secret:
    """A string that never shows itself in ``repr`` or logs."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (for logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_env_value(name: str, annotation: object, raw: str) -> object:
    var = ENV_PREFIX + name.upper()
    kind = str(annotation)
    try:
        if "Secret" in kind:
            return Secret(raw)
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
    except ValueError:
        raise SettingsError(f"{var}={raw!r} is not a valid {kind}") from None
    return raw
