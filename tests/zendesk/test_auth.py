"""Zendesk credentials on the wire: client credentials, fixed bearer, legacy API token."""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses

from bridge.errors import AuthError, TransientApiError
from bridge.zendesk.auth import BearerToken, ClientCredentials, LegacyApiToken

from .conftest import BASE, FakeClock, RecordingSleep, make_transport, sent, sent_json

TOKEN_URL = f"{BASE}/oauth/tokens"
SECRET = "s3cr3t-client-value"
PING = f"{BASE}/api/v2/custom_objects/car"


def token_answer(token: str, expires_in: int | None = 3600) -> dict[str, object]:
    body: dict[str, object] = {"access_token": token, "token_type": "bearer", "scope": "read write"}
    if expires_in is not None:
        body["expires_in"] = expires_in
    return body


def credentials(session: aiohttp.ClientSession, clock: FakeClock) -> ClientCredentials:
    return ClientCredentials(
        session, token_url=TOKEN_URL, client_id="bridge-app", client_secret=SECRET, clock=clock
    )


def token_calls(mock: aioresponses) -> int:
    return len(sent(mock, "POST", TOKEN_URL))


async def test_token_request_body_is_client_credentials_json(session, mock, clock) -> None:
    mock.post(TOKEN_URL, payload=token_answer("tok-1"))
    auth = credentials(session, clock)

    assert await auth.headers() == {"Authorization": "Bearer tok-1"}

    (call,) = sent(mock, "POST", TOKEN_URL)
    assert sent_json(call) == {
        "grant_type": "client_credentials",
        "client_id": "bridge-app",
        "client_secret": SECRET,
        "scope": "read write",
    }
    assert call["headers"]["Content-Type"] == "application/json"


async def test_token_is_fetched_once_and_reused(session, mock, clock, sleep) -> None:
    mock.post(TOKEN_URL, payload=token_answer("tok-1"))
    seen: list[str] = []

    def record(url, **kwargs):
        seen.append(kwargs["headers"]["Authorization"])
        return CallbackResult(payload={"custom_object": {"key": "car"}})

    mock.get(PING, callback=record, repeat=True)
    transport = make_transport(session, credentials(session, clock), sleep, clock)

    await asyncio.gather(*(transport.request("GET", PING) for _ in range(5)))

    assert token_calls(mock) == 1
    assert seen == ["Bearer tok-1"] * 5


async def test_token_is_renewed_before_expiry(session, mock, clock) -> None:
    mock.post(TOKEN_URL, payload=token_answer("tok-1", expires_in=3600))
    mock.post(TOKEN_URL, payload=token_answer("tok-2", expires_in=3600))
    auth = credentials(session, clock)
    start = clock.now

    assert (await auth.headers())["Authorization"] == "Bearer tok-1"
    clock.now = start + 3600 - 300 - 0.001  # just inside the 300 s margin
    assert (await auth.headers())["Authorization"] == "Bearer tok-1"
    clock.now = start + 3600 - 300
    assert (await auth.headers())["Authorization"] == "Bearer tok-2"
    assert token_calls(mock) == 2


async def test_short_lived_token_is_not_refetched_at_once(session, mock, clock) -> None:
    mock.post(TOKEN_URL, payload=token_answer("tok-1", expires_in=200))
    auth = credentials(session, clock)

    await auth.headers()
    clock.now += 50
    await auth.headers()

    assert token_calls(mock) == 1


async def test_token_without_expiry_is_kept_until_a_401(session, mock, clock) -> None:
    mock.post(TOKEN_URL, payload=token_answer("tok-1", expires_in=None))
    auth = credentials(session, clock)

    await auth.headers()
    clock.now += 10 * 86400
    assert (await auth.headers())["Authorization"] == "Bearer tok-1"
    assert token_calls(mock) == 1


async def test_401_refreshes_the_token_and_resends(session, mock, clock, sleep) -> None:
    mock.post(TOKEN_URL, payload=token_answer("tok-old"))
    mock.post(TOKEN_URL, payload=token_answer("tok-new"))
    seen: list[str] = []

    def answer(url, **kwargs):
        seen.append(kwargs["headers"]["Authorization"])
        if kwargs["headers"]["Authorization"] == "Bearer tok-old":
            return CallbackResult(status=401, payload={"error": "invalid_token"})
        return CallbackResult(payload={"custom_object": {"key": "car"}})

    mock.get(PING, callback=answer, repeat=True)
    transport = make_transport(session, credentials(session, clock), sleep, clock)

    resp = await transport.request("GET", PING)

    assert resp.status == 200
    assert seen == ["Bearer tok-old", "Bearer tok-new"]
    assert token_calls(mock) == 2


async def test_overlapping_refreshes_fetch_one_token(session, mock, clock) -> None:
    minted = iter(["tok-1", "tok-2", "tok-3", "tok-4"])
    gate = asyncio.Event()

    async def slow_token(url, **kwargs):
        await gate.wait()  # hold the fetch open so the other refreshes queue behind it
        return CallbackResult(payload=token_answer(next(minted)))

    mock.post(TOKEN_URL, callback=slow_token, repeat=True)
    auth = credentials(session, clock)
    gate.set()
    await auth.headers()
    gate.clear()

    refreshes = [asyncio.create_task(auth.refresh()) for _ in range(3)]
    while not auth._lock.locked():  # noqa: ASYNC110 - wait for the first fetch to start
        await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*refreshes)

    assert token_calls(mock) == 2
    assert (await auth.headers())["Authorization"] == "Bearer tok-2"


async def test_sequential_refreshes_each_fetch(session, mock, clock) -> None:
    for token in ("tok-1", "tok-2", "tok-3"):
        mock.post(TOKEN_URL, payload=token_answer(token))
    auth = credentials(session, clock)
    await auth.headers()

    await auth.refresh()
    await auth.refresh()

    assert (await auth.headers())["Authorization"] == "Bearer tok-3"


@pytest.mark.parametrize("status", [400, 401, 403])
async def test_refused_credentials_name_the_env_vars_and_hide_the_secret(
    session, mock, clock, status
) -> None:
    body = {"error": "invalid_client", "error_description": f"bad client_secret={SECRET}"}
    mock.post(TOKEN_URL, status=status, body=json.dumps(body))
    auth = credentials(session, clock)

    with pytest.raises(AuthError) as caught:
        await auth.headers()

    message = str(caught.value)
    assert "ZENDESK_CLIENT_ID" in message and "ZENDESK_CLIENT_SECRET" in message
    assert "invalid_client" in message
    assert SECRET not in message and SECRET not in caught.value.detail
    assert caught.value.status == status


async def test_token_endpoint_echoing_the_secret_verbatim_is_scrubbed(session, mock, clock) -> None:
    mock.post(TOKEN_URL, status=400, body=f"client {SECRET} unknown", content_type="text/plain")

    with pytest.raises(AuthError) as caught:
        await credentials(session, clock).headers()

    assert SECRET not in str(caught.value)
    assert "unknown" in str(caught.value)


async def test_answer_without_access_token_is_an_auth_error(session, mock, clock) -> None:
    mock.post(TOKEN_URL, payload={"token_type": "bearer"})

    with pytest.raises(AuthError, match="no access_token"):
        await credentials(session, clock).headers()


async def test_token_endpoint_outage_is_transient(session, mock, clock) -> None:
    mock.post(TOKEN_URL, status=503, headers={"Retry-After": "7"}, body="down")

    with pytest.raises(TransientApiError) as caught:
        await credentials(session, clock).headers()

    assert caught.value.retry_after == 7.0
    assert caught.value.status == 503


async def test_token_endpoint_unreachable_is_transient(session, mock, clock) -> None:
    mock.post(TOKEN_URL, exception=aiohttp.ClientConnectionError("refused"))

    with pytest.raises(TransientApiError, match="could not reach"):
        await credentials(session, clock).headers()


async def test_legacy_api_token_header_is_exact() -> None:
    auth = LegacyApiToken("agent@example.com", "abc123")

    header = (await auth.headers())["Authorization"]

    assert header == "Basic YWdlbnRAZXhhbXBsZS5jb20vdG9rZW46YWJjMTIz"
    assert base64.b64decode(header.removeprefix("Basic ")) == b"agent@example.com/token:abc123"


async def test_legacy_api_token_refresh_points_to_oauth() -> None:
    with pytest.raises(AuthError) as caught:
        await LegacyApiToken("agent@example.com", "abc123").refresh()

    message = str(caught.value)
    assert "2027-04-30" in message and "ZENDESK_CLIENT_ID" in message
    assert "abc123" not in message


async def test_fixed_bearer_token_cannot_refresh() -> None:
    auth = BearerToken("fixed-token-value")

    assert await auth.headers() == {"Authorization": "Bearer fixed-token-value"}
    with pytest.raises(AuthError) as caught:
        await auth.refresh()
    assert "ZENDESK_OAUTH_TOKEN" in str(caught.value)
    assert "fixed-token-value" not in str(caught.value)


async def test_second_401_after_refresh_stops_with_auth_error(
    session, mock, clock, sleep: RecordingSleep
) -> None:
    mock.post(TOKEN_URL, payload=token_answer("tok-1"))
    mock.post(TOKEN_URL, payload=token_answer("tok-2"))
    mock.get(PING, status=401, payload={"error": "invalid_token"}, repeat=True)
    transport = make_transport(session, credentials(session, clock), sleep, clock)

    with pytest.raises(AuthError) as caught:
        await transport.request("GET", PING)

    assert "tok-1" not in str(caught.value) and "tok-2" not in str(caught.value)
    assert len(sent(mock, "GET", PING)) == 2


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_token_request_never_follows_a_redirect(session, mock, clock, status) -> None:
    elsewhere = "https://collector.example/oauth/tokens"
    mock.post(TOKEN_URL, status=status, headers={"Location": elsewhere}, body="")
    mock.post(elsewhere, payload=token_answer("tok-elsewhere"), repeat=True)
    mock.get(elsewhere, payload=token_answer("tok-elsewhere"), repeat=True)

    with pytest.raises(AuthError) as caught:
        await credentials(session, clock).headers()

    assert sent(mock, "POST", elsewhere) == [] and sent(mock, "GET", elsewhere) == []
    assert token_calls(mock) == 1
    message = str(caught.value)
    assert f"HTTP {status}" in message and "redirect" in message
    assert "collector.example" in message and "ZENDESK_URL" in message
    assert SECRET not in message
    assert caught.value.status == status


async def test_a_refresh_refused_429_then_503_is_waited_out_by_the_request_loop(
    session, mock, clock, sleep: RecordingSleep
) -> None:
    mock.post(TOKEN_URL, payload=token_answer("tok-old"))
    mock.post(TOKEN_URL, status=429, headers={"Retry-After": "7"}, body="slow down")
    mock.post(TOKEN_URL, status=503, body="down")
    mock.post(TOKEN_URL, payload=token_answer("tok-new"))
    seen: list[str] = []

    def answer(url, **kwargs):
        seen.append(kwargs["headers"]["Authorization"])
        if kwargs["headers"]["Authorization"] == "Bearer tok-old":
            return CallbackResult(status=401, payload={"error": "invalid_token"})
        return CallbackResult(payload={"custom_object": {"key": "car"}})

    mock.get(PING, callback=answer, repeat=True)
    transport = make_transport(session, credentials(session, clock), sleep, clock)

    resp = await transport.request("GET", PING)

    assert resp.status == 200
    assert seen == ["Bearer tok-old", "Bearer tok-new"]  # the refused token is never resent
    assert token_calls(mock) == 4
    assert sleep.delays[0] == 7.0  # the token endpoint's Retry-After, waited by the one loop


async def test_a_token_retry_after_as_an_http_date_is_honoured(
    session, mock, clock, sleep: RecordingSleep
) -> None:
    mock.post(TOKEN_URL, status=429, headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"})

    with pytest.raises(TransientApiError) as caught:
        await credentials(session, clock).headers()

    assert caught.value.status == 429
    assert caught.value.retry_after is not None and caught.value.retry_after > 86400


async def test_an_answer_that_is_not_json_is_an_auth_error(session, mock, clock) -> None:
    mock.post(TOKEN_URL, status=200, body="<html>sign in</html>", content_type="text/html")

    with pytest.raises(AuthError, match="no access_token"):
        await credentials(session, clock).headers()


async def test_a_token_endpoint_failure_echoing_the_secret_is_scrubbed(session, mock, clock) -> None:
    mock.post(TOKEN_URL, status=503, body=f"upstream got client_secret {SECRET}", content_type="text/plain")

    with pytest.raises(TransientApiError) as caught:
        await credentials(session, clock).headers()

    assert SECRET not in str(caught.value) and SECRET not in caught.value.detail
    assert "HTTP 503" in str(caught.value) and "ZENDESK_URL" in str(caught.value)
