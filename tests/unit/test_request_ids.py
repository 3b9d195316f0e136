"""New request ids: 32 random hex digits each, never repeated, drawn from the OS in batches."""

from __future__ import annotations

import re

from api.middlewares import RequestIds


def test_ids_are_32_hex_digits_and_distinct_across_refills() -> None:
    ids = RequestIds(batch=4)
    drawn = [ids.new() for _ in range(50)]  # 12 refills of the pool
    assert all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in drawn)
    assert len(set(drawn)) == len(drawn)
