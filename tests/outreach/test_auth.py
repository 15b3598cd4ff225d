from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses
from aioresponses.core import normalize_url

from bridge.errors import AuthError
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
    """TokenStore fake: a dict, a lock per name, and a log of what happened in which order."""

    def __init__(self, token: StoredToken | None = None) -> None:
        self.tokens: dict[str, StoredToken] = {"outreach": token} if token else {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.log: list[str] = []

    async def load(self, name: str) -> StoredToken | None:
        return self.tokens.get(name)

    async def save(self, name: str, token: StoredToken) -> None:
        assert self.locks[name].locked(), "saved outside the store lock"
        self.log.append(f"save {token.access_token}")
        self.tokens[name] = token

    @asynccontextmanager
    async def _locked(self, name: str) -> AsyncIterator[None]:
        async with self.locks.setdefault(name, asyncio.Lock()):
            self.log.append("lock")
            yield

    def lock(self, name: str) -> Any:
        return self._locked(name)


class Utc:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def token(access: str, *, minted: datetime, refresh: str = "stored-refresh", ttl: float = 7200) -> StoredToken:
    return StoredToken(access, refresh, minted + timedelta(seconds=ttl), minted)


def oauth(session: aiohttp.ClientSession, store: MemoryStore, utc: Utc) -> OAuthRefresh:
    return OAuthRefresh(
        session, token_url=TOKEN_URL, client_id="cid", client_secret=SECRET,
        refresh_token=ENV_REFRESH, store=store, clock=utc,
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
    assert store.tokens["outreach"] == StoredToken("access-1", "rotated-refresh", T0 + timedelta(hours=1), T0)
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


async def test_refused_right_after_a_refresh_does_not_mint_again(session, mocked) -> None:
    utc = Utc()
    store = MemoryStore(token("just-minted", minted=T0 - timedelta(seconds=20)))
    auth = oauth(session, store, utc)
    await auth.headers()
    with pytest.raises(AuthError, match="right after a refresh"):
        await auth.refresh()
    assert token_posts(mocked) == []


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
