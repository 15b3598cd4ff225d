"""Sync these ids: chunking by count and by filter length."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridge.pipeline.targeted import FETCH_CHUNK, FILTER_CHARS, chunks


def test_chunks_cap_ids_and_filter_length() -> None:
    sizes = [len(c) for c in chunks([str(i) for i in range(2500)])]
    assert sizes == [1000, 1000, 500]
    long_ids = [str(10**11 + i) for i in range(1000)]  # 12 digits: 13 chars each
    assert all(sum(len(x) + 1 for x in c) <= FILTER_CHARS for c in chunks(long_ids))
    assert sum(len(c) for c in chunks(long_ids)) == 1000


@given(st.lists(st.text(alphabet="0123456789abcdef", min_size=1, max_size=40), max_size=3000))
def test_chunks_keep_every_id_once_in_order_within_both_limits(ids: list[str]) -> None:
    out = chunks(ids)
    assert [i for chunk in out for i in chunk] == ids
    assert all(0 < len(chunk) <= FETCH_CHUNK for chunk in out)
    assert all(len(chunk) == 1 or sum(len(i) + 1 for i in chunk) <= FILTER_CHARS + 1 for chunk in out)
