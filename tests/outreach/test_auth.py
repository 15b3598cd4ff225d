from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses
from aioresponses.core import normalize_url
from structlog.testing import capture_logs

from bridge.errors import AuthError, StoreError
from bridge.http.retry import RetryPolicy
from bridge.http.transport import HttpConfig, Transport
from bridge.outreach.auth import OAuthRefresh, StaticToken, StoredToken
from tests.http.fakes import FakeTime

API = "https://api.outreach.io"
TOKEN_URL = f"{API}/oauth/token"
DATA = f"{API}/api/v2/customObjects/vehicles"
SECRET = "client-SECRET-xyz"
ENV_REFRESH = "env-refresh-SECRET"
T0 = datetime(2024, 7, 25, 12, 0, tzinfo=UTC)


class MemoryStore:
    """TokenStore fake: a dict, a lock per name, and a log of what happened in which order.

    `fail_saves` makes that many saves raise StoreError, as a database blip would.
    """

    def __init__(self, token: StoredToken | None = None) -> None:
        self.tokens: dict[str, StoredToken] = {"outreach": token} if token else {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.log: list[str] = []
        self.fail_saves = 0

    async def load(self, name: str) -> StoredToken | None:
        return self.tokens.get(name)

    async def save(self, name: str, token: StoredToken) -> None:
        assert self.locks[name].locked(), "saved outside the store lock"
        if self.fail_saves:
            self.fail_saves -= 1
            self.log.append(f"save failed {token.access_token}")
            raise StoreError("could not save rotated token 'outreach': connection reset")
        self.log.append(f"save {token.access_token}")
        self.tokens[name] = token

    def fingerprint(self, refresh_token: str) -> str:
        return fingerprint(refresh_token)

    @asynccontextmanager
    async def _locked(self, name: str) -> AsyncIterator[None]:
        async with self.locks.setdefault(name, asyncio.Lock()):
            self.log.append("lock")
            yield

    def lock(self, name: str) -> Any:
        return self._locked(name)


class Utc:
    """The wall clock OAuthRefresh reads, and the sleep it waits with: sleeping moves the clock."""

    def __init__(self) -> None:
        self.now = T0
        self.sleeps: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)


def fingerprint(refresh_token: str) -> str:
    return "fp-" + hashlib.sha256(refresh_token.encode()).hexdigest()[:12]


def token(access: str, *, minted: datetime, refresh: str = "stored-refresh", ttl: float = 7200) -> StoredToken:
    return StoredToken(access, refresh, minted + timedelta(seconds=ttl), minted)


def oauth(session: aiohttp.ClientSession, store: MemoryStore, utc: Utc, env: str = ENV_REFRESH) -> OAuthRefresh:
    return OAuthRefresh(
        session, token_url=TOKEN_URL, client_id="cid", client_secret=SECRET,
        refresh_token=env, store=store, clock=utc, sleep=utc.sleep,
    )


def mint_answer(access: str, refresh: str | None = "rotated-refresh", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"access_token": access, "token_type": "bearer", "scope": "x", **extra}
    if refresh:
        body["refresh_token"] = refresh
    return body


def token_posts(m: aioresponses) -> list[dict[str, str]]:
    return [call.kwargs["data"] for call in m.requests.get(("POST", normalize_url(TOKEN_URL)), [])]


def transport(session: aiohttp.ClientSession, auth: Any, t: FakeTime) -> Transport:
    return Transport(session, HttpConfig(api="outreach"), auth=auth, retry=RetryPolicy(rand=lambda: 1.0),
                     sleep=t.sleep, clock=t.clock, wall=t.wall)


async def test_static_token() -> None:
    auth = StaticToken("static-SECRET")
    assert await auth.headers() == {"Authorization": "Bearer static-SECRET"}
    with pytest.raises(AuthError, match="OUTREACH_ACCESS_TOKEN") as info:
        await auth.refresh()
    assert "static-SECRET" not in str(info.value) and "static-SECRET" not in repr(auth)


async def test_first_use_mints_with_the_env_refresh_token_and_saves(session, mocked) -> None:
    store, utc = MemoryStore(), Utc()
    mocked.post(TOKEN_URL, payload=mint_answer("access-1", expires_in=3600))
    auth = oauth(session, store, utc)
    assert await auth.headers() == {"Authorization": "Bearer access-1"}
    assert await auth.headers() == {"Authorization": "Bearer access-1"}  # cached: no second mint
    assert token_posts(mocked) == [{
        "grant_type": "refresh_token", "client_id": "cid", "client_secret": SECRET, "refresh_token": ENV_REFRESH,
    }]
    assert store.tokens["outreach"] == StoredToken(
        "access-1", "rotated-refresh", T0 + timedelta(hours=1), T0, seed=fingerprint(ENV_REFRESH)
    )
    assert store.log == ["lock", "save access-1"]


async def test_a_valid_stored_token_is_used_without_minting(session, mocked) -> None:
    store = MemoryStore(token("stored-access", minted=T0 - timedelta(minutes=10)))
    auth = oauth(session, store, Utc())
    assert await auth.headers() == {"Authorization": "Bearer stored-access"}
    assert token_posts(mocked) == []


async def test_stored_refresh_token_wins_over_the_env_one(session, mocked) -> None:
    store = MemoryStore(token("old", minted=T0 - timedelta(hours=3), refresh="newest-refresh"))
    mocked.post(TOKEN_URL, payload=mint_answer("access-2", refresh=None))
    auth = oauth(session, store, Utc())
    await auth.headers()
    assert token_posts(mocked)[0]["refresh_token"] == "newest-refresh"
    saved = store.tokens["outreach"]
    # no rotated refresh token in the answer: the one used is kept; expires_in defaults to 2 h
    assert (saved.refresh_token, saved.expires_at) == ("newest-refresh", T0 + timedelta(seconds=7200))


async def test_renews_before_expiry_within_the_margin(session, mocked) -> None:
    utc = Utc()
    store = MemoryStore(token("soon-expired", minted=T0 - timedelta(minutes=116)))  # 4 min left < 5
    mocked.post(TOKEN_URL, payload=mint_answer("fresh"))
    assert await oauth(session, store, utc).headers() == {"Authorization": "Bearer fresh"}
    assert len(token_posts(mocked)) == 1


async def test_401_refreshes_saves_then_retries(session, mocked, fake_time) -> None:
    store = MemoryStore(token("expired-on-server", minted=T0 - timedelta(minutes=30)))
    auth = oauth(session, store, Utc())
    mocked.post(TOKEN_URL, payload=mint_answer("access-new"))
    seen: list[tuple[str, list[str]]] = []

    def data(url: Any, **kwargs: Any) -> CallbackResult:
        seen.append((kwargs["headers"]["Authorization"], list(store.log)))
        return CallbackResult(status=401 if len(seen) == 1 else 200, payload={"data": []})

    mocked.get(DATA, callback=data, repeat=True)
    resp = await transport(session, auth, fake_time).request("GET", DATA)
    assert resp.status == 200
    assert seen == [
        ("Bearer expired-on-server", []),
        ("Bearer access-new", ["lock", "save access-new"]),  # persisted before it was used
    ]


async def test_two_concurrent_refreshes_mint_once(session, mocked, fake_time) -> None:
    store = MemoryStore(token("old", minted=T0 - timedelta(minutes=30)))
    auth = oauth(session, store, Utc())
    mocked.post(TOKEN_URL, payload=mint_answer("access-new"))
    sent: list[str] = []

    def data(url: Any, **kwargs: Any) -> CallbackResult:
        sent.append(kwargs["headers"]["Authorization"])
        return CallbackResult(status=200 if sent[-1] == "Bearer access-new" else 401, payload={})

    mocked.get(DATA, callback=data, repeat=True)
    tr = transport(session, auth, fake_time)
    results = await asyncio.gather(tr.request("GET", DATA), tr.request("GET", DATA))
    assert [r.status for r in results] == [200, 200]
    assert sent.count("Bearer access-new") == 2
    assert len(token_posts(mocked)) == 1
    assert store.log.count("save access-new") == 1


async def test_concurrent_refresh_calls_after_the_same_401_mint_once(session, mocked) -> None:
    store = MemoryStore(token("old", minted=T0 - timedelta(minutes=30)))
    auth = oauth(session, store, Utc())
    mocked.post(TOKEN_URL, payload=mint_answer("access-new"))
    await auth.headers()
    await asyncio.gather(*(auth.refresh() for _ in range(5)))
    assert len(token_posts(mocked)) == 1
    assert await auth.headers() == {"Authorization": "Bearer access-new"}


async def test_a_late_401_for_a_replaced_token_does_not_mint_again(session, mocked) -> None:
    store = MemoryStore(token("old", minted=T0 - timedelta(minutes=30)))
    auth = oauth(session, store, Utc())
    mocked.post(TOKEN_URL, payload=mint_answer("access-new"))
    b_sent_old, a_refreshed = asyncio.Event(), asyncio.Event()

    async def request_b() -> dict[str, str]:
        assert await auth.headers() == {"Authorization": "Bearer old"}
        b_sent_old.set()
        await a_refreshed.wait()
        await auth.refresh()  # B's 401 is for "old", which A already replaced
        return await auth.headers()

    b = asyncio.create_task(request_b())
    await b_sent_old.wait()
    await auth.headers()
    await auth.refresh()  # A's 401: mints
    a_refreshed.set()
    assert await b == {"Authorization": "Bearer access-new"}
    assert len(token_posts(mocked)) == 1


async def test_a_401_right_after_a_mint_waits_for_the_mint_interval_then_mints_once_more(session, mocked) -> None:
    utc = Utc()
    store = MemoryStore(token("just-minted", minted=T0 - timedelta(seconds=20)))
    auth = oauth(session, store, utc)
    await auth.headers()
    mocked.post(TOKEN_URL, payload=mint_answer("access-new"))
    await auth.refresh()  # revoked on the server: not a reason to stop the run
    assert utc.sleeps == [40.0]  # Outreach mints one token a minute (api/outreach.md, Auth)
    assert await auth.headers() == {"Authorization": "Bearer access-new"}
    assert len(token_posts(mocked)) == 1


async def test_a_30s_token_is_used_until_shortly_before_it_expires(session, mocked) -> None:
    utc, store = Utc(), MemoryStore()
    mocked.post(TOKEN_URL, payload=mint_answer("short-1", refresh="rot-1", expires_in=30))
    mocked.post(TOKEN_URL, payload=mint_answer("short-2", refresh="rot-2", expires_in=30))
    auth = oauth(session, store, utc)
    assert await auth.headers() == {"Authorization": "Bearer short-1"}
    utc.advance(20)  # 10 s left: not stale yet for a 30 s token
    assert await auth.headers() == {"Authorization": "Bearer short-1"}
    utc.advance(4)  # 6 s left: renewed ahead of its expiry
    assert await auth.headers() == {"Authorization": "Bearer short-2"}
    assert [p["refresh_token"] for p in token_posts(mocked)] == [ENV_REFRESH, "rot-1"]
    assert utc.sleeps == []
    assert store.tokens["outreach"].expires_at == utc.now + timedelta(seconds=30)


async def test_a_2h_token_is_renewed_five_minutes_ahead(session, mocked) -> None:
    utc = Utc()
    mocked.post(TOKEN_URL, payload=mint_answer("long-1", expires_in=7200))
    mocked.post(TOKEN_URL, payload=mint_answer("long-2", expires_in=7200))
    auth = oauth(session, MemoryStore(), utc)
    await auth.headers()
    utc.advance(7200 - 301)
    assert await auth.headers() == {"Authorization": "Bearer long-1"}
    utc.advance(2)
    assert await auth.headers() == {"Authorization": "Bearer long-2"}


async def test_the_token_endpoints_429_is_waited_out_however_often(session, mocked) -> None:
    utc, store = Utc(), MemoryStore()
    throttled = {"errors": [{"id": "rateLimitExceeded", "title": "Rate Limit Exceeded"}]}
    for _ in range(5):
        mocked.post(TOKEN_URL, status=429, payload=throttled, headers={"Retry-After": "1"})
    mocked.post(TOKEN_URL, payload=mint_answer("access-1"))
    auth = oauth(session, store, utc)
    assert await auth.headers() == {"Authorization": "Bearer access-1"}
    assert len(token_posts(mocked)) == 6 and sum(utc.sleeps) >= 5


async def test_a_throttled_early_renewal_keeps_using_the_valid_token(session, mocked) -> None:
    utc = Utc()
    mocked.post(TOKEN_URL, payload=mint_answer("short-1", refresh="rot-1", expires_in=40))
    mocked.post(TOKEN_URL, status=429, payload={}, headers={"Retry-After": "4"})
    mocked.post(TOKEN_URL, payload=mint_answer("short-2", refresh="rot-2", expires_in=40))
    auth = oauth(session, MemoryStore(), utc)
    await auth.headers()
    utc.advance(32)  # due (8 s left), but the server refuses to mint yet
    assert await auth.headers() == {"Authorization": "Bearer short-1"}
    assert await auth.headers() == {"Authorization": "Bearer short-1"}  # no new POST before 4 s
    assert len(token_posts(mocked)) == 2 and utc.sleeps == []
    utc.advance(4)
    assert await auth.headers() == {"Authorization": "Bearer short-2"}


async def test_many_expiries_under_strict_rotation_never_fail(session, mocked) -> None:
    """Outreach-like endpoint: 30 s tokens, one mint per 10 s, each refresh token works once."""
    utc, store = Utc(), MemoryStore()
    state = {"refresh": ENV_REFRESH, "last": None, "n": 0}

    def endpoint(url: Any, **kwargs: Any) -> CallbackResult:
        form = kwargs["data"]
        if form["refresh_token"] != state["refresh"]:
            return CallbackResult(status=400, payload={"error": "invalid_grant"})
        if state["last"] is not None and utc.now - state["last"] < timedelta(seconds=10):
            return CallbackResult(status=429, payload={}, headers={"Retry-After": "10"})
        state["n"] += 1
        state["last"], state["refresh"] = utc.now, f"rot-{state['n']}"
        return CallbackResult(payload=mint_answer(f"access-{state['n']}", refresh=state["refresh"], expires_in=30))

    mocked.post(TOKEN_URL, callback=endpoint, repeat=True)
    auth = oauth(session, store, utc)
    seen = set()
    for _ in range(200):  # 10 minutes of requests, 3 s apart, with a 401 now and then
        seen.add((await auth.headers())["Authorization"])
        if len(seen) % 7 == 0:
            await auth.refresh()
        utc.advance(3)
    assert 20 <= state["n"] <= 40
    assert store.tokens["outreach"].refresh_token == state["refresh"]


async def test_a_rotated_token_whose_save_failed_is_kept_and_saved_before_the_next_mint(session, mocked) -> None:
    utc, store = Utc(), MemoryStore(token("old", minted=T0 - timedelta(hours=3), refresh="stored-refresh"))
    posted_with_log: list[tuple[str, list[str]]] = []

    def endpoint(url: Any, **kwargs: Any) -> CallbackResult:
        n = len(posted_with_log) + 1
        posted_with_log.append((kwargs["data"]["refresh_token"], list(store.log)))
        return CallbackResult(payload=mint_answer(f"access-{n}", refresh=f"rot-{n}", expires_in=60))

    mocked.post(TOKEN_URL, callback=endpoint, repeat=True)
    store.fail_saves = 1
    auth = oauth(session, store, utc)
    with capture_logs() as logs:
        assert await auth.headers() == {"Authorization": "Bearer access-1"}  # used although unsaved
    failed = [e for e in logs if e["event"] == "outreach_token_save_failed"]
    assert len(failed) == 1 and failed[0]["log_level"] == "warning"
    assert "rot-1" not in str(logs) and "access-1" not in str(logs)
    assert store.tokens["outreach"].access_token == "old"
    utc.advance(50)  # due: the unsaved token is saved first, and its refresh token is used
    assert await auth.headers() == {"Authorization": "Bearer access-2"}
    assert posted_with_log[1] == ("rot-1", ["lock", "save failed access-1", "lock", "save access-1"])
    assert store.tokens["outreach"].refresh_token == "rot-2"


async def test_an_unsaved_token_is_saved_again_soon_without_waiting_for_a_mint(session, mocked) -> None:
    utc, store = Utc(), MemoryStore()
    mocked.post(TOKEN_URL, payload=mint_answer("access-1", refresh="rot-1"))
    store.fail_saves = 2
    auth = oauth(session, store, utc)
    await auth.headers()
    await auth.headers()
    assert "outreach" not in store.tokens
    utc.advance(10)
    await auth.headers()  # second save fails too: still no error
    utc.advance(30)
    assert await auth.headers() == {"Authorization": "Bearer access-1"}
    assert store.tokens["outreach"].refresh_token == "rot-1"
    assert len(token_posts(mocked)) == 1


async def test_a_changed_env_refresh_token_is_taken_and_reseeds_the_store(session, mocked) -> None:
    stored = token("stored-access", minted=T0 - timedelta(minutes=10), refresh="chain-refresh")
    store = MemoryStore(replace(stored, seed=fingerprint("the-previous-env-token")))
    mocked.post(TOKEN_URL, payload=mint_answer("from-env", refresh="rot-env"))
    auth = oauth(session, store, Utc())
    with capture_logs() as logs:
        assert await auth.headers() == {"Authorization": "Bearer from-env"}
    assert token_posts(mocked)[0]["refresh_token"] == ENV_REFRESH
    saved = store.tokens["outreach"]
    assert (saved.refresh_token, saved.seed) == ("rot-env", fingerprint(ENV_REFRESH))
    assert [e["event"] for e in logs if e["event"] == "outreach_token_reseeded"] == ["outreach_token_reseeded"]
    assert ENV_REFRESH not in str(logs)


async def test_an_unchanged_env_refresh_token_keeps_the_stored_chain(session, mocked) -> None:
    stored = token("stored-access", minted=T0 - timedelta(minutes=10), refresh="chain-refresh")
    store = MemoryStore(replace(stored, seed=fingerprint(ENV_REFRESH)))
    auth = oauth(session, store, Utc())
    assert await auth.headers() == {"Authorization": "Bearer stored-access"}
    assert token_posts(mocked) == []


async def test_a_refused_new_env_token_falls_back_to_the_stored_chain(session, mocked) -> None:
    stored = token("expired", minted=T0 - timedelta(hours=3), refresh="chain-refresh")
    store = MemoryStore(replace(stored, seed=fingerprint("the-previous-env-token")))
    mocked.post(TOKEN_URL, status=400, payload={"error": "invalid_grant"})
    mocked.post(TOKEN_URL, payload=mint_answer("from-chain", refresh="rot-chain"))
    auth = oauth(session, store, Utc())
    with capture_logs() as logs:
        assert await auth.headers() == {"Authorization": "Bearer from-chain"}
    assert [p["refresh_token"] for p in token_posts(mocked)] == [ENV_REFRESH, "chain-refresh"]
    assert store.tokens["outreach"].seed == fingerprint("the-previous-env-token")
    assert any(e["event"] == "outreach_refresh_token_refused" for e in logs)


async def test_a_legacy_row_is_taken_as_seeded_by_the_env_token(session, mocked) -> None:
    store = MemoryStore(token("old", minted=T0 - timedelta(hours=3), refresh="chain-refresh"))
    assert store.tokens["outreach"].seed is None  # stored before fingerprints existed
    mocked.post(TOKEN_URL, payload=mint_answer("next"))
    await oauth(session, store, Utc()).headers()
    assert token_posts(mocked)[0]["refresh_token"] == "chain-refresh"
    assert store.tokens["outreach"].seed == fingerprint(ENV_REFRESH)


async def test_a_newer_token_from_another_process_is_adopted(session, mocked) -> None:
    utc = Utc()
    store = MemoryStore(token("mine", minted=T0 - timedelta(minutes=30)))
    auth = oauth(session, store, utc)
    await auth.headers()
    store.tokens["outreach"] = token("theirs", minted=T0 - timedelta(seconds=5))  # another worker refreshed
    await auth.refresh()
    assert await auth.headers() == {"Authorization": "Bearer theirs"}
    assert token_posts(mocked) == []


async def test_invalid_grant_is_an_auth_error_without_secrets(session, mocked) -> None:
    body = {"error": "invalid_grant", "error_description": f"refresh token {ENV_REFRESH} is invalid"}
    mocked.post(TOKEN_URL, status=400, payload=body)
    with pytest.raises(AuthError) as info:
        await oauth(session, MemoryStore(), Utc()).headers()
    message = str(info.value)
    assert "refresh token refused; re-authorise and set OUTREACH_REFRESH_TOKEN" in message
    assert "invalid_grant" in message and info.value.status == 400
    for secret in (SECRET, ENV_REFRESH):
        assert secret not in message and secret not in info.value.detail


async def test_invalid_client_is_an_auth_error(session, mocked) -> None:
    mocked.post(TOKEN_URL, status=401, payload={"error": "invalid_client"})
    with pytest.raises(AuthError, match="OUTREACH_CLIENT_ID") as info:
        await oauth(session, MemoryStore(), Utc()).headers()
    assert SECRET not in str(info.value)


async def test_token_answer_without_access_token_is_an_auth_error(session, mocked) -> None:
    mocked.post(TOKEN_URL, payload={"refresh_token": "leaked-refresh-SECRET"})
    store = MemoryStore()
    with pytest.raises(AuthError, match="no usable access_token") as info:
        await oauth(session, store, Utc()).headers()
    assert "leaked-refresh-SECRET" not in str(info.value)
    assert store.tokens == {}


async def test_second_401_after_refresh_is_an_auth_error(session, mocked, fake_time) -> None:
    store = MemoryStore(token("old", minted=T0 - timedelta(minutes=30)))
    mocked.post(TOKEN_URL, payload=mint_answer("access-new"))
    mocked.get(DATA, status=401, payload={"errors": [{"id": "unauthorizedRequest"}]}, repeat=True)
    with pytest.raises(AuthError) as info:
        await transport(session, oauth(session, store, Utc()), fake_time).request("GET", DATA)
    assert "access-new" not in str(info.value) and "old" not in str(info.value).split(":")[0]
    assert len(token_posts(mocked)) == 1


async def test_a_due_stored_token_is_used_while_the_token_endpoint_says_wait(session, mocked) -> None:
    utc = Utc()
    store = MemoryStore(token("stored-due", minted=T0 - timedelta(minutes=117)))  # 3 min left
    mocked.post(TOKEN_URL, status=429, payload={}, headers={"Retry-After": "30"})
    auth = oauth(session, store, utc)
    assert await auth.headers() == {"Authorization": "Bearer stored-due"}
    assert utc.sleeps == [] and len(token_posts(mocked)) == 1
