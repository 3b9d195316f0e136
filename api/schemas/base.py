"""The conventions every request and response body model follows: strict inputs that forbid
unknown fields, optional update fields that refuse ``null``, camelCase outputs, timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class InputModel(BaseModel):
    """A request body: strict types, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class OutputModel(BaseModel):
    """A response body: camelCase on the wire, exactly the declared fields."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, extra="forbid")


def omit_null_defaults(schema: dict[str, Any]) -> None:
    """``null`` is refused, so it is not documented as the default of the optional fields (use
    as a model's ``json_schema_extra``)."""
    for field_schema in schema.get("properties", {}).values():
        if "default" in field_schema and field_schema["default"] is None:
            del field_schema["default"]


def optional_field(alias: str | None = None) -> Any:
    """An optional field whose absence is told by ``model_fields_set``; ``null`` is refused
    (the model's config needs ``json_schema_extra=omit_null_defaults``)."""
    return Field(default=None, alias=alias)


def iso_timestamp(value: datetime) -> str:
    """ISO-8601 in UTC with milliseconds and ``Z``: ``2021-07-05T12:43:52.921Z``."""
    utc = value.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"
