"""Regression corpus: every byte sequence in ``corpus/`` keeps the hostile-input invariants
(see ``corpus/README.md``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.protocol.hostile import Limits, run

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(CORPUS.glob("*.bin"))
LIMIT_SETS = {
    "tight": Limits(max_message_size=1, max_chunk_size=1, max_chunk_streams=1, max_amf_depth=1),
    "small": Limits(max_message_size=4096, max_chunk_size=4096, max_chunk_streams=8),
    "default": Limits(),
}
BYTEWISE_UP_TO = 16_384
"""Larger cases are not also fed byte by byte (to keep the run short)."""


def splits(size: int) -> list[list[int]]:
    """Ways to cut ``size`` bytes: first byte then the rest, 7 and 1000-byte pieces, bytewise."""
    ways = [[1], list(range(7, size, 7)), list(range(1000, size, 1000))]
    if size <= BYTEWISE_UP_TO:
        ways.append(list(range(1, size)))
    return ways


def test_the_corpus_is_there() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("limits", LIMIT_SETS.values(), ids=LIMIT_SETS.keys())
@pytest.mark.parametrize("path", CASES, ids=[path.stem for path in CASES])
def test_corpus_case_keeps_the_invariants(path: Path, limits: Limits) -> None:
    data = path.read_bytes()
    events, error = run(data, (), limits)
    for cuts in splits(len(data)):
        split_events, split_error = run(data, cuts, limits)
        assert split_error == error, cuts[:3]
        if error is None:
            assert split_events == events, cuts[:3]
