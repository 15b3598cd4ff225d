from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from bridge.errors import TransientApiError
from bridge.http.retry import RetryPolicy, parse_retry_after


def transient(retry_after: float | None = None) -> TransientApiError:
    return TransientApiError("x", retry_after=retry_after, api="test")


def test_backoff_doubles_up_to_the_cap_with_full_jitter() -> None:
    policy = RetryPolicy(max_attempts=10, base=0.5, cap=3.0, rand=lambda: 1.0)
    delays = [policy.delay(n, transient()) for n in range(1, 7)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_jitter_scales_the_backoff() -> None:
    policy = RetryPolicy(base=1.0, rand=lambda: 0.25)
    assert policy.delay(3, transient()) == pytest.approx(1.0)  # 0.25 * 4


def test_gives_up_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3, rand=lambda: 1.0)
    assert policy.delay(2, transient()) is not None
    assert policy.delay(3, transient()) is None


def test_never_waits_less_than_retry_after() -> None:
    policy = RetryPolicy(base=0.5, rand=lambda: 1.0)
    assert policy.delay(1, transient(retry_after=7.0)) == 7.0
    assert policy.delay(6 - 1, transient(retry_after=0.1)) == 8.0  # backoff larger than it


def test_rejects_zero_attempts() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


NOW = datetime(2024, 7, 25, 13, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("12", 12.0),
        (" 1.5 ", 1.5),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        ((NOW + timedelta(seconds=90)).strftime("%Y-%m-%dT%H:%M:%S.000Z"), 90.0),
        ((NOW + timedelta(seconds=45)).isoformat(), 45.0),
        ((NOW - timedelta(seconds=45)).isoformat(), 0.0),
        ("-3", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, NOW.timestamp()) == expected


def test_only_a_429_is_flow_control() -> None:
    policy = RetryPolicy()
    assert policy.is_flow_control(TransientApiError("x", api="t", status=429))
    for status in (None, 408, 500, 503):
        assert not policy.is_flow_control(TransientApiError("x", api="t", status=status))


def test_flow_control_waits_the_retry_after_exactly_or_backs_off() -> None:
    policy = RetryPolicy(max_attempts=1, base=0.5, cap=4.0, rand=lambda: 1.0)
    assert policy.pause(50, transient(retry_after=0.2)) == 0.2  # no attempt limit, no backoff on top
    assert [policy.pause(n, transient()) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_flow_control_with_a_zero_retry_after_backs_off_rather_than_hammer() -> None:
    policy = RetryPolicy(base=0.5, cap=4.0, rand=lambda: 1.0)
    assert [policy.pause(n, transient(retry_after=0.0)) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
