"""Typed configuration for liverelay."""

from config.settings import Secret, Settings, SettingsError, redact_url

__all__ = ["Secret", "Settings", "SettingsError", "redact_url"]
