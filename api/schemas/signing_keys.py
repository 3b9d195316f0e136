"""Bodies of ``/v1/signing-keys``."""

from __future__ import annotations

from pydantic import Field

from api.models import SigningKey
from api.schemas.base import OutputModel, iso_timestamp
from api.schemas.livestreams import PageInfo


class SigningKeyOutput(OutputModel):
    """A signing key as listed: its id (the ``kid`` of playback tokens) and creation time."""

    id: str = Field(description="The `kid` header of the playback tokens signed with this key.")
    created_at: str = Field(json_schema_extra={"format": "date-time"})


class NewSigningKeyOutput(SigningKeyOutput):
    """Answer of ``POST /v1/signing-keys``: the only time the private key is shown."""

    private_key: str = Field(
        description="The RSA private key (PEM, base64-encoded) to sign playback tokens with "
        "(RS256). Shown only in this answer: the server keeps only the public key."
    )


class SigningKeyPage(OutputModel):
    """Body of ``GET /v1/signing-keys``: newest first."""

    page_info: PageInfo
    data: list[SigningKeyOutput]


def signing_key_output(key: SigningKey) -> SigningKeyOutput:
    """A key in responses (never any part of its private half)."""
    return SigningKeyOutput(id=key.id, created_at=iso_timestamp(key.created_at))
