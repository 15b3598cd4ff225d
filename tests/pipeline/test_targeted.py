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


def test_change_to_write_counts_written_records_with_a_known_change_time_only() -> None:
    from datetime import UTC, datetime, timedelta

    from bridge.outreach.models import Page, SourceRecord
    from bridge.pipeline.page import PageOutcome, change_to_write
    from bridge.store.idmap import IdMapRow

    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

    def record(rid: str, seconds_ago: float | None) -> SourceRecord:
        at = None if seconds_ago is None else now - timedelta(seconds=seconds_ago)
        return SourceRecord(id=rid, type="prospect", attributes={}, relationships={}, updated_at=at)

    page = Page(records=[record("1", 2.5), record("2", 7.0), record("3", None), record("4", -1.0)], url="u",
                next_url=None, included={})  # fmt: skip
    written = [IdMapRow("1", "z1", "e1", "h"), IdMapRow("3", "z3", "e3", "h"), IdMapRow("4", "z4", "e4", "h")]
    outcome = PageOutcome(page, written, [], skipped=1, changed=3)
    assert change_to_write(outcome, now) == [2.5, 0.0]  # 2 was not written; 3 has no updatedAt; 4 is clamped
