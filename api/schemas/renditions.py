"""The ``renditions`` field of a live stream (its adaptive-bitrate ladder), as a pydantic type;
the rungs and their rules are :mod:`workers.renditions`'."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from workers.renditions import RUNGS, SOURCE, ladder_problem, rendition_names

MAX_RENDITIONS = len(RUNGS) + 1


def _valid_ladder(value: list[str]) -> list[str]:
    problem = ladder_problem(value)
    if problem is not None:
        raise PydanticCustomError("invalid_renditions", problem)
    return value


def _rung_list() -> str:
    return ", ".join(
        f"`{rung.name}` ({rung.video_kbps} kbit/s, level {rung.level})" for rung in RUNGS.values()
    )


Renditions = Annotated[
    list[str],
    Field(
        min_length=1,
        max_length=MAX_RENDITIONS,
        description=f'The renditions played at `downstreamUrl`: `["{SOURCE}"]` (the default) '
        "is the publish as it comes; more names add transcoded H.264 renditions (libx264, "
        f"Main profile, keyframes at the source's): {_rung_list()}. `{SOURCE}` must come "
        "first, each name once. A rung at or above the source's height is not produced (never "
        "upscaled); `currentSession.renditions` says which are. With more than one rendition "
        "produced, `downstreamUrl` is a multivariant playlist. Recordings keep the source "
        "rendition. A change while live applies from the next session.",
        json_schema_extra={"items": {"enum": list(rendition_names())}},
    ),
    AfterValidator(_valid_ladder),
]
