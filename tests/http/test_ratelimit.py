from __future__ import annotations

import asyncio

import pytest

from bridge.http.ratelimit import RateLimiter
from tests.http.fakes import FakeTime


def limiter(t: FakeTime, reserve: float = 0.05) -> RateLimiter:
    return RateLimiter(clock=t.clock, sleep=t.sleep, reserve=reserve, wall=t.wall, rand=lambda: 0.0)


async def send_times(rl: RateLimiter, t: FakeTime, n: int) -> list[float]:
    times = []
    for _ in range(n):
        await rl.wait()
        times.append(t.now - 1000.0)
    return times


async def test_no_waiting_without_headers_or_with_plenty_left() -> None:
    t = FakeTime()
    rl = limiter(t)
    assert await send_times(rl, t, 3) == [0, 0, 0]
    rl.update({"X-RateLimit-Limit": "10000", "X-RateLimit-Remaining": "9000", "X-RateLimit-Reset": "600"})
    assert await send_times(rl, t, 5) == [0] * 5
    assert t.sleeps == [] and rl.waited_seconds == 0


async def test_spreads_the_reserve_evenly_until_the_reset() -> None:
    t = FakeTime()
    rl = limiter(t)
    # 4 left of 100 (below 5 %), reset in 40 s: one request every 10 s, the 5th at the reset
    rl.update({"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "4", "X-RateLimit-Reset": "40"})
    assert await send_times(rl, t, 5) == [0, 10, 20, 30, 40]
    assert rl.waited_seconds == 40


async def test_slows_down_more_as_remaining_falls() -> None:
    gaps = []
    for remaining in ("4", "2", "1"):
        t = FakeTime()
        rl = limiter(t)
        rl.update({"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": remaining, "X-RateLimit-Reset": "40"})
        times = await send_times(rl, t, 2)
        gaps.append(times[1] - times[0])
    assert gaps == [10, 20, 40]


async def test_concurrent_waiters_get_distinct_slots() -> None:
    t = FakeTime()
    rl = limiter(t)
    rl.update({"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "4", "X-RateLimit-Reset": "40"})
    sent: list[float] = []

    async def one() -> None:
        await rl.wait()
        sent.append(t.now - 1000.0)

    await asyncio.gather(*(one() for _ in range(4)))
    assert sorted(sent) == [0, 10, 20, 30]


async def test_remaining_takes_the_first_of_two_values() -> None:
    t = FakeTime()
    rl = limiter(t)
    rl.update({"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "2, 90", "X-RateLimit-Reset": "20"})
    assert rl.quota is not None and rl.quota.remaining == 2
    assert await send_times(rl, t, 3) == [0, 10, 20]


async def test_reset_as_epoch_seconds_equals_reset_as_delta() -> None:
    t = FakeTime()
    a, b, c = limiter(t), limiter(t), limiter(t)
    base = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "1"}
    a.update({**base, "X-RateLimit-Reset": "30"})
    b.update({**base, "X-RateLimit-Reset": str(int(t.wall()) + 30)})
    c.update({**base, "X-RateLimit-Reset": str(int(t.wall() * 1000) + 30_000)})
    assert a.quota and b.quota and c.quota
    assert a.quota.reset_at == b.quota.reset_at == c.quota.reset_at == t.now + 30


async def test_reset_in_the_past_or_absurd_is_sane() -> None:
    t = FakeTime()
    rl = limiter(t)
    rl.update({"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(t.wall()) - 50)})
    assert await send_times(rl, t, 2) == [0, 0]  # window already reset
    rl.update({"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "99999999"})
    assert rl.quota is not None and rl.quota.reset_at - t.now <= 3600


async def test_zendesk_per_minute_headers() -> None:
    t = FakeTime()
    rl = limiter(t)
    rl.update({"X-Rate-Limit": "400", "X-Rate-Limit-Remaining": "10"})  # below 20 = 5 % of 400
    assert await send_times(rl, t, 3) == [0, 6, 12]


async def test_tightest_of_several_headers_wins() -> None:
    t = FakeTime()
    rl = limiter(t)
    rl.update({
        "X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "600",
        "ratelimit-limit": "100", "ratelimit-remaining": "2", "ratelimit-reset": "10",
    })
    assert rl.quota is not None and (rl.quota.limit, rl.quota.remaining) == (100, 2)


async def test_unreadable_headers_change_nothing() -> None:
    t = FakeTime()
    rl = limiter(t)
    rl.update({"X-RateLimit-Limit": "lots", "X-RateLimit-Remaining": "1", "X-RateLimit-Reset": "9"})
    rl.update({"Content-Type": "application/json"})
    assert rl.quota is None


async def release_times(rl: RateLimiter, t: FakeTime, n: int) -> list[float]:
    released: list[float] = []

    async def one() -> None:
        await rl.wait()
        released.append(t.now - 1000.0)

    await asyncio.gather(*(one() for _ in range(n)))
    return released


async def test_pause_holds_every_waiter_until_it_ends() -> None:
    t = FakeTime()
    rl = limiter(t)
    rl.pause_for(5)
    rl.pause_until(t.now + 2)  # a shorter pause never shortens the longer one
    released = await release_times(rl, t, 3)
    assert min(released) >= 5
    assert rl.waited_seconds >= 15


async def test_waiters_released_by_a_pause_get_successive_jittered_slots() -> None:
    t = FakeTime()
    rl = RateLimiter(clock=t.clock, sleep=t.sleep, wall=t.wall, min_spacing=0.1, rand=lambda: 0.5)
    rl.pause_until(t.now + 5)
    released = await release_times(rl, t, 8)
    assert all(when >= 5 for when in released)  # never before the Retry-After moment
    assert all(b > a for a, b in zip(released, released[1:]))  # one at a time, in order
    assert len(set(released)) == 8
    assert released[0] == pytest.approx(5.05)  # jitter on top of the pause's end, never before it
    assert [b - a for a, b in zip(released, released[1:])] == pytest.approx([0.15] * 7)


async def test_slots_after_a_pause_follow_the_quota_spread_when_known() -> None:
    t = FakeTime()
    rl = RateLimiter(clock=t.clock, sleep=t.sleep, wall=t.wall, min_spacing=0.01, rand=lambda: 0.0)
    rl.update({"X-Rate-Limit": "60", "X-Rate-Limit-Remaining": "50"})  # 60 a minute: one a second
    rl.pause_for(2)
    assert await release_times(rl, t, 4) == [2, 3, 4, 5]


async def test_a_request_arriving_while_the_released_are_draining_queues_behind_them() -> None:
    t = FakeTime()
    rl = RateLimiter(clock=t.clock, sleep=t.sleep, wall=t.wall, min_spacing=1.0, rand=lambda: 0.0)
    rl.pause_for(2)
    first = await release_times(rl, t, 3)
    assert first == [2, 3, 4]
    assert await release_times(rl, t, 1) == [5]  # right after the last: still spaced
    t.now += 10
    assert await release_times(rl, t, 2) == [15, 15]  # long after: no pacing left


async def test_exhausted_quota_releases_waiters_one_by_one_at_the_reset() -> None:
    t = FakeTime()
    rl = RateLimiter(clock=t.clock, sleep=t.sleep, wall=t.wall, min_spacing=0.5, rand=lambda: 0.0)
    rl.update({"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "20"})
    released = await release_times(rl, t, 3)
    assert released[0] >= 20
    assert all(b > a for a, b in zip(released, released[1:]))


def test_spacing_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RateLimiter(min_spacing=0)


async def test_a_request_queued_again_behind_a_new_pause_spends_the_quota_once() -> None:
    t = FakeTime()
    rl = RateLimiter(clock=t.clock, sleep=t.sleep, wall=t.wall, min_spacing=1.0, rand=lambda: 0.0)
    rl.update({"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "50", "X-RateLimit-Reset": "600"})
    rl.pause_for(1)
    waiter = asyncio.ensure_future(rl.wait())
    await asyncio.sleep(0)  # it has taken its slot (at 1 s) and sleeps
    rl.pause_for(3)  # a second 429 extends the pause before that slot comes
    await waiter
    assert t.now - 1000.0 >= 3
    assert rl.quota is not None and rl.quota.remaining == 49


async def test_with_a_shared_budget_a_low_per_minute_remaining_does_not_spread_requests() -> None:
    """Zendesk's Remaining counts a fixed minute and gives no reset: near the end of each
    minute it is low, and spreading it over a guessed minute would hold requests for seconds
    each. The shared budget already keeps every process under the limit."""
    from bridge.http.budget import SharedBudget
    from tests.http.test_budget import POLICY, MemoryBudget

    t = FakeTime()
    budget = SharedBudget(MemoryBudget(t), POLICY, clock=t.clock, sleep=t.sleep)
    rl = RateLimiter(clock=t.clock, sleep=t.sleep, wall=t.wall, rand=lambda: 0.0, budget=budget)
    rl.update({"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "20"})  # below 5 % of 700

    times = await send_times(rl, t, 3)

    assert times == pytest.approx([0, POLICY.interval, 2 * POLICY.interval])  # the budget's pace
