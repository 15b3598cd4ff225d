"""What the alerts say and when: one message per change of state, whoever looks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.alert_watch import AlertWatch, Observation, message_for, observe
from bridge.alerts import AlertConfig, AlertSender
from bridge.store import alerts as store_alerts
from bridge.store import runs

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def replay(condition: str, states: list[str]) -> list[str]:
    """The events `message_for` sends for states observed one after another (as swap_state
    hands it the previous state only when the state changed)."""
    sent, previous = [], None
    for state in states:
        if state != previous:
            message = message_for(Observation("vehicles", condition, state, {
                "error": "403", "run_status": "succeeded", "dead_letters": 1, "lag_seconds": 1, "disabled_webhooks": 2,
                "threshold_seconds": 1.0}), previous)  # fmt: skip
            if message is not None:
                sent.append(message.event)
            previous = state
    return sent


@settings(deadline=None)  # pure and quick; a loaded CI machine must not fail it on time
@given(st.lists(st.sampled_from(["ok", "failing"]), max_size=30))
def test_failing_and_recovered_alternate_once_per_change(states: list[str]) -> None:
    changes = [s for i, s in enumerate(states) if s != (states[i - 1] if i else "ok")]
    expected = ["mapping_failing" if s == "failing" else "mapping_recovered" for s in changes]
    assert replay("failing", states) == expected


@settings(deadline=None)  # pure and quick; a loaded CI machine must not fail it on time
@given(st.lists(st.sampled_from(["ok", "lagging"]), max_size=30))
def test_lag_alerts_once_per_crossing(states: list[str]) -> None:
    changes = [s for i, s in enumerate(states) if s != (states[i - 1] if i else "ok")]
    assert replay("lag", states) == ["lagging" if s == "lagging" else "lag_recovered" for s in changes]


@settings(deadline=None)  # pure and quick; a loaded CI machine must not fail it on time
@given(st.lists(st.one_of(st.just("add"), st.integers(min_value=0, max_value=9)), max_size=30))
def test_dead_letters_alert_once_per_look_that_finds_a_new_one(steps: list[str | int]) -> None:
    """Between two looks either a letter arrives (newer than every earlier one) or one leaves."""
    letters: list[int] = []
    states, arrivals = [], 0
    for n, step in enumerate(steps):
        if step == "add":
            letters.append(n)
            arrivals += 1
        elif letters:
            letters.pop(int(step) % len(letters))
        states.append((T0 + timedelta(hours=max(letters))).isoformat() if letters else "none")
    assert len(replay("dead_letters", states)) == arrivals


def test_webhooks_disabled_and_enabled_again_are_said_once_each() -> None:
    assert replay("webhooks", ["enabled", "disabled", "disabled", "enabled"]) == [
        "webhook_disabled", "webhook_enabled",
    ]  # fmt: skip


def test_observe_judges_runs_lag_and_dead_letters() -> None:
    now = T0 + timedelta(hours=3)
    failed = runs.RunRow(1, "vehicles", "worker", "failed", T0, T0, runs.RunCounts(), "Outreach 403", "w1")
    running = runs.RunRow(2, "brands", "worker", "running", T0, None, runs.RunCounts(), None, "w1")
    seen = observe(["vehicles", "brands"], {"vehicles": failed, "brands": running},
                   {"vehicles": T0, "brands": now}, {}, 3600.0, now)  # fmt: skip
    by_key = {(o.mapping, o.condition): o.state for o in seen}
    assert by_key == {
        ("vehicles", "failing"): "failing", ("vehicles", "dead_letters"): "none", ("vehicles", "lag"): "lagging",
        ("brands", "dead_letters"): "none", ("brands", "lag"): "ok",
    }  # fmt: skip


async def test_two_replicas_looking_at_once_queue_one_message_per_change(db_pool: asyncpg.Pool[Any]) -> None:
    config = AlertConfig(url="http://127.0.0.1:9/unused", check_seconds=60)
    watches = [AlertWatch(db_pool, ["vehicles"], config, AlertSender(db_pool, config)) for _ in range(3)]

    async def look() -> int:
        return sum(await asyncio.gather(*(w.check_once() for w in watches)))

    async with db_pool.acquire() as conn:
        run_id = await runs.start(conn, "vehicles", "worker")
        await runs.finish(conn, run_id, "failed", error="Outreach answered 403")
    assert await look() == 1
    assert await look() == 0
    async with db_pool.acquire() as conn:
        run_id = await runs.start(conn, "vehicles", "worker")
        await runs.finish(conn, run_id, "succeeded")
    assert await look() == 1
    watches[0].lease_taken_over("vehicles", "worker:gone:1:1:x", "worker:here:2:1:y")
    assert await look() == 1
    for watch in watches:  # every replica's webhook check counts the same disabled webhooks
        watch.webhooks_disabled(2)
    assert await look() == 1
    assert await look() == 0
    for watch in watches:
        watch.webhooks_disabled(0)
    assert await look() == 1
    async with db_pool.acquire() as conn:
        events = [r["event"] for r in await conn.fetch("SELECT event FROM alert_outbox ORDER BY id")]
        assert await store_alerts.states(conn) == {
            ("vehicles", "failing"): "ok", ("vehicles", "dead_letters"): "none", ("vehicles", "lag"): "ok",
            ("*", "webhooks"): "enabled",
        }  # fmt: skip
    assert events == ["mapping_failing", "mapping_recovered", "lease_taken_over", "webhook_disabled", "webhook_enabled"]
