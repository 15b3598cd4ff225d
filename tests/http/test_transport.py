from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses
from aioresponses.core import normalize_url

from bridge.errors import ApiError, AuthError, RejectedError, TransientApiError
from bridge.http.ratelimit import RateLimiter
from bridge.http.retry import RetryPolicy
from bridge.http.transport import HttpConfig, RequestEvent, Response, Transport
from tests.http.fakes import FakeTime

URL = "https://api.example.test/api/v2/things?page[size]=10"
TOKEN = "tok-SECRET-123"


class FakeAuth:
    def __init__(self, tokens: list[str], refusals: int = 0) -> None:
        self.tokens = tokens
        self.refreshes = 0
        self.refusals = refusals

    async def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[min(self.refreshes, len(self.tokens) - 1)]}"}

    async def refresh(self) -> None:
        if self.refusals:
            raise AuthError("test: refresh refused", api="test")
        self.refreshes += 1


def make(
    session: aiohttp.ClientSession, t: FakeTime, *, auth: Any = None, attempts: int = 6,
    limiter: RateLimiter | None = None, events: list[RequestEvent] | None = None,
    deadline: float = 600.0,
) -> Transport:
    hooks = [events.append] if events is not None else []
    return Transport(
        session, HttpConfig(api="test", timeout=5.0, deadline=deadline), auth=auth,
        retry=RetryPolicy(max_attempts=attempts, base=0.5, cap=30.0, rand=lambda: 1.0),
        limiter=limiter, hooks=hooks, sleep=t.sleep, clock=t.clock, wall=t.wall,
    )


def sent_headers(m: aioresponses, method: str = "GET", url: str = URL) -> list[dict[str, str]]:
    return [dict(call.kwargs["headers"]) for call in m.requests[(method, normalize_url(url))]]


async def test_success_returns_status_headers_and_parsed_json(session, mocked, fake_time) -> None:
    mocked.get(URL, payload={"ok": 1}, headers={"X-Thing": "y"})
    tr = make(session, fake_time, auth=FakeAuth([TOKEN]))
    resp = await tr.request("GET", URL, headers={"Accept": "application/vnd.api+json"})
    assert (resp.status, resp.json(), resp.headers["x-thing"]) == (200, {"ok": 1}, "y")
    headers = sent_headers(mocked)[0]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Accept"] == "application/vnd.api+json"


async def test_json_body_and_form_data_are_sent(session, mocked, fake_time) -> None:
    mocked.post(URL, status=201, payload={})
    mocked.post(URL, status=200, payload={})
    tr = make(session, fake_time)
    await tr.request("POST", URL, json={"a": [1]})
    await tr.request("POST", URL, data={"grant_type": "x"}, authenticated=False)
    first, second = mocked.requests[("POST", normalize_url(URL))]
    assert json.loads(first.kwargs["data"]) == {"a": [1]}
    assert first.kwargs["headers"]["Content-Type"] == "application/json"
    assert second.kwargs["data"] == {"grant_type": "x"}
    assert "Authorization" not in second.kwargs["headers"]


async def test_empty_body_is_fine(session, mocked, fake_time) -> None:
    mocked.delete(URL, status=204, body=b"")
    resp = await make(session, fake_time).request("DELETE", URL)
    assert resp.status == 204 and resp.body == b""


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 408])
async def test_transient_statuses_are_retried_with_backoff(session, mocked, fake_time, status) -> None:
    mocked.get(URL, status=status, payload={"error": "boom"})
    mocked.get(URL, status=status, body="plain text failure", content_type="text/plain")
    mocked.get(URL, payload={"ok": True})
    events: list[RequestEvent] = []
    resp = await make(session, fake_time, events=events).request("GET", URL)
    assert resp.json() == {"ok": True}
    assert fake_time.sleeps == [0.5, 1.0]
    assert [e.status for e in events] == [status, status, 200]
    assert events[-1].error is None and events[0].error in {"server_error", "rate_limited"}


FAILURES = [
    (TimeoutError(), "timeout"),
    (aiohttp.ServerTimeoutError("read timeout"), "timeout"),
    (aiohttp.ClientConnectionError("refused"), "connection"),
    (aiohttp.ServerDisconnectedError(), "connection"),
    (aiohttp.ClientPayloadError("truncated"), "connection"),
    (aiohttp.ClientOSError(104, "reset"), "connection"),
    (ConnectionResetError(104, "Connection reset by peer"), "connection"),
    (aiohttp.ClientSSLError(None, OSError("handshake")), "connection"),  # type: ignore[arg-type]
    (aiohttp.ClientConnectorError(SimpleNamespace(host="h", port=443, ssl=True), OSError(-2, "dns")), "connection"),  # type: ignore[arg-type]
    (aiohttp.ClientResponseError(aiohttp.RequestInfo(URL, "GET", {}, URL), (), status=0), "connection"),  # type: ignore[arg-type]
    (aiohttp.ClientError("anything else from aiohttp"), "connection"),
    (OSError(113, "No route to host"), "connection"),
]


@pytest.mark.parametrize(("exc", "kind"), FAILURES, ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v)
async def test_network_failures_are_retried(session, mocked, fake_time, exc, kind) -> None:
    mocked.get(URL, exception=exc)
    mocked.get(URL, payload={"ok": True})
    events: list[RequestEvent] = []
    resp = await make(session, fake_time, events=events).request("GET", URL)
    assert resp.json() == {"ok": True}
    assert fake_time.sleeps == [0.5]
    assert [(e.status, e.error) for e in events] == [(None, kind), (200, None)]


@pytest.mark.parametrize(("exc", "kind"), FAILURES, ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v)
async def test_network_failures_translate_to_transient_from_the_original(session, mocked, fake_time, exc, kind) -> None:
    mocked.get(URL, exception=exc)
    with pytest.raises(TransientApiError) as info:
        await make(session, fake_time, attempts=1).request("GET", URL)
    err = info.value
    assert err.__cause__ is exc
    assert (err.api, err.method, err.status) == ("test", "GET", None)
    assert str(err).startswith("test GET /api/v2/things?page[size]=10: ")
    assert ("no response within 5s" in str(err)) == (kind == "timeout")


@pytest.mark.parametrize(
    "exc",
    [
        aiohttp.InvalidURL("nope://"),
        aiohttp.TooManyRedirects(aiohttp.RequestInfo(URL, "GET", {}, URL), ()),  # type: ignore[arg-type]
        aiohttp.ClientConnectorCertificateError(None, OSError("bad cert")),  # type: ignore[arg-type]
    ],
    ids=lambda e: type(e).__name__,
)
async def test_configuration_failures_are_not_retried(session, mocked, fake_time, exc) -> None:
    mocked.get(URL, exception=exc)
    with pytest.raises(ApiError) as info:
        await make(session, fake_time).request("GET", URL)
    assert not isinstance(info.value, TransientApiError)
    assert info.value.__cause__ is exc
    assert fake_time.sleeps == []


async def test_gives_up_after_max_attempts_and_reraises_the_last_error(session, mocked, fake_time) -> None:
    for _ in range(4):
        mocked.get(URL, status=502, payload={"errors": [{"title": "Bad gateway"}]})
    with pytest.raises(TransientApiError) as info:
        await make(session, fake_time, attempts=4).request("GET", URL)
    assert fake_time.sleeps == [0.5, 1.0, 2.0]
    assert info.value.status == 502
    assert str(info.value) == (
        "test GET /api/v2/things?page[size]=10: 502 Bad gateway; gave up after 4 attempts "
        "in 3.5s; the API keeps failing, try again later (BRIDGE_MAX_ATTEMPTS sets the attempts)"
    )


def rate_limited(m: aioresponses, times: int, retry_after: str | None = "2") -> None:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    for _ in range(times):
        m.get(URL, status=429, headers=headers, payload={"errors": [{"title": "Too many"}]})


async def test_429_with_retry_after_waits_without_spending_an_attempt(session, mocked, fake_time) -> None:
    rate_limited(mocked, 8)  # far more than the 3 attempts
    mocked.get(URL, payload={"ok": True})
    events: list[RequestEvent] = []
    resp = await make(session, fake_time, attempts=3, events=events).request("GET", URL)
    assert resp.json() == {"ok": True}
    assert fake_time.sleeps == [2.0] * 8
    assert [e.status for e in events] == [429] * 8 + [200]


async def test_429_without_retry_after_backs_off_without_spending_an_attempt(session, mocked, fake_time) -> None:
    rate_limited(mocked, 5, retry_after=None)
    mocked.get(URL, payload={"ok": True})
    resp = await make(session, fake_time, attempts=2).request("GET", URL)
    assert resp.json() == {"ok": True}
    assert fake_time.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0]


async def test_429s_leave_the_attempts_to_server_errors(session, mocked, fake_time) -> None:
    for status in (429, 502, 429, 429, 503, 429):
        mocked.get(URL, status=status, headers={"Retry-After": "1"} if status == 429 else {}, payload={})
    mocked.get(URL, payload={"ok": True})
    resp = await make(session, fake_time, attempts=3).request("GET", URL)
    assert resp.json() == {"ok": True}
    assert fake_time.sleeps == [1.0, 0.5, 1.0, 1.0, 1.0, 1.0]


async def test_429_waits_stop_at_the_request_deadline_and_say_so(session, mocked, fake_time) -> None:
    rate_limited(mocked, 10, retry_after="4")
    with pytest.raises(TransientApiError) as info:
        await make(session, fake_time, deadline=10.0).request("GET", URL)
    assert fake_time.sleeps == [4.0, 4.0]  # a third wait would end at 12 s, past the 10 s deadline
    err = info.value
    assert (err.status, err.api, err.method) == (429, "test", "GET")
    assert str(err) == (
        "test GET /api/v2/things?page[size]=10: 429 Too many; still refused after 8s and the "
        "next wait (4s) would pass the request deadline of 10s; try again later, or raise "
        "BRIDGE_REQUEST_DEADLINE_SECONDS"
    )


async def test_a_retry_after_beyond_the_deadline_is_not_waited_for(session, mocked, fake_time) -> None:
    rate_limited(mocked, 1, retry_after="3600")
    with pytest.raises(TransientApiError, match="next wait \\(3600s\\) would pass the request deadline of 600s"):
        await make(session, fake_time).request("GET", URL)
    assert fake_time.sleeps == []


async def test_server_error_retries_stop_at_the_request_deadline(session, mocked, fake_time) -> None:
    mocked.get(URL, status=502, payload={"errors": [{"title": "Bad gateway"}]}, repeat=True)
    with pytest.raises(TransientApiError, match="502 Bad gateway; still refused after 3.5s"):
        await make(session, fake_time, attempts=20, deadline=5.0).request("GET", URL)
    assert fake_time.sleeps == [0.5, 1.0, 2.0]


async def test_network_failures_stop_at_the_request_deadline(session, mocked, fake_time) -> None:
    mocked.get(URL, exception=aiohttp.ServerDisconnectedError(), repeat=True)
    with pytest.raises(TransientApiError) as info:
        await make(session, fake_time, attempts=20, deadline=2.0).request("GET", URL)
    assert fake_time.sleeps == [0.5, 1.0]
    assert "connection failed (ServerDisconnectedError); still refused after 1.5s" in str(info.value)
    assert isinstance(info.value.__cause__, aiohttp.ServerDisconnectedError)


async def test_retry_after_seconds_is_honoured(session, mocked, fake_time) -> None:
    mocked.get(URL, status=429, headers={"Retry-After": "7"}, payload={})
    mocked.get(URL, payload={})
    await make(session, fake_time).request("GET", URL)
    assert fake_time.sleeps == [7.0]


async def test_retry_after_http_date_is_honoured(session, mocked, fake_time) -> None:
    when = datetime.fromtimestamp(fake_time.wall(), UTC) + timedelta(seconds=20)
    mocked.get(URL, status=503, headers={"Retry-After": format_datetime(when, usegmt=True)}, payload={})
    mocked.get(URL, payload={})
    await make(session, fake_time).request("GET", URL)
    assert fake_time.sleeps == [pytest.approx(20.0, abs=1.0)]


async def test_retry_after_iso_timestamp_of_maintenance_is_honoured(session, mocked, fake_time) -> None:
    when = datetime.fromtimestamp(fake_time.wall(), UTC) + timedelta(seconds=90)
    body = {"errors": [{"id": "scheduledServerMaintenance", "title": "Maintenance"}]}
    mocked.get(URL, status=503, headers={"Retry-After": when.strftime("%Y-%m-%dT%H:%M:%S.000Z")}, payload=body)
    mocked.get(URL, payload={})
    await make(session, fake_time).request("GET", URL)
    assert fake_time.sleeps == [pytest.approx(90.0, abs=0.01)]


async def test_429_pauses_every_request_through_the_limiter(session, mocked, fake_time) -> None:
    other = "https://api.example.test/api/v2/other"
    t = fake_time
    limiter = RateLimiter(clock=t.clock, sleep=t.sleep, wall=t.wall)
    sent: dict[str, list[float]] = {"a": [], "b": []}
    answers = iter([CallbackResult(status=429, headers={"Retry-After": "5"}, payload={}), CallbackResult(payload={})])

    def on_a(url: Any, **kwargs: Any) -> CallbackResult:
        sent["a"].append(t.now)
        return next(answers)

    def on_b(url: Any, **kwargs: Any) -> CallbackResult:
        sent["b"].append(t.now)
        return CallbackResult(payload={})

    mocked.get(URL, callback=on_a, repeat=True)
    mocked.get(other, callback=on_b, repeat=True)

    b_tasks: list[asyncio.Task[Response]] = []

    def hook(event: RequestEvent) -> None:
        # the moment the 429 is classified, three other requests try to go out
        if event.status == 429:
            b_tasks.extend(asyncio.get_running_loop().create_task(tr.request("GET", other)) for _ in range(3))

    tr = Transport(
        session, HttpConfig(api="test"), auth=None, limiter=limiter, hooks=[hook],
        retry=RetryPolicy(rand=lambda: 0.0), sleep=t.sleep, clock=t.clock, wall=t.wall,
    )

    start = t.now
    await tr.request("GET", URL)
    await asyncio.gather(*b_tasks)
    assert len(sent["a"]) == 2 and len(sent["b"]) == 3
    assert sent["a"][1] >= start + 5
    assert all(when >= start + 5 for when in sent["b"])
    assert len(set(sent["a"][1:] + sent["b"])) == 4  # released one at a time, not as a burst
    assert limiter.waited_seconds >= 20  # the retry and the three others all waited in the limiter


async def test_limiter_is_updated_from_every_response(session, mocked, fake_time) -> None:
    limiter = RateLimiter(clock=fake_time.clock, sleep=fake_time.sleep, wall=fake_time.wall)
    mocked.get(URL, payload={}, headers={"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "2", "X-RateLimit-Reset": "20"})
    mocked.get(URL, payload={})
    mocked.get(URL, payload={})
    tr = make(session, fake_time, limiter=limiter)
    await tr.request("GET", URL)
    await tr.request("GET", URL)
    await tr.request("GET", URL)
    assert fake_time.sleeps == [10.0]


async def test_401_refreshes_once_and_resends(session, mocked, fake_time) -> None:
    auth = FakeAuth(["old-token", TOKEN])
    mocked.get(URL, status=401, payload={"errors": [{"id": "unauthorizedRequest"}]})
    mocked.get(URL, payload={"ok": 1})
    resp = await make(session, fake_time, auth=auth).request("GET", URL)
    assert resp.json() == {"ok": 1} and auth.refreshes == 1
    assert [h["Authorization"] for h in sent_headers(mocked)] == ["Bearer old-token", f"Bearer {TOKEN}"]
    assert fake_time.sleeps == []


async def test_second_401_is_an_auth_error_without_secrets(session, mocked, fake_time) -> None:
    auth = FakeAuth(["old-token", TOKEN])
    mocked.get(URL, status=401, payload={"errors": [{"detail": "bad"}]}, repeat=True)
    with pytest.raises(AuthError) as info:
        await make(session, fake_time, auth=auth).request("GET", URL)
    assert auth.refreshes == 1 and info.value.status == 401
    assert TOKEN not in str(info.value) and "old-token" not in str(info.value)
    assert "after a refresh" in str(info.value)


async def test_401_without_auth_is_an_auth_error(session, mocked, fake_time) -> None:
    mocked.get(URL, status=401, payload={})
    with pytest.raises(AuthError):
        await make(session, fake_time).request("GET", URL)


async def test_refresh_failure_propagates(session, mocked, fake_time) -> None:
    mocked.get(URL, status=401, payload={})
    with pytest.raises(AuthError, match="refresh refused"):
        await make(session, fake_time, auth=FakeAuth([TOKEN], refusals=1)).request("GET", URL)


class StumblingAuth(FakeAuth):
    """After a 401 its token endpoint first answers with these transient errors, to the
    refresh and then to the renewals the resends' `headers()` attempt (as ClientCredentials)."""

    def __init__(self, tokens: list[str], failures: list[TransientApiError]) -> None:
        super().__init__(tokens)
        self.failures = failures
        self.renewing = False

    async def headers(self) -> dict[str, str]:
        if self.renewing:
            await self.refresh()
        return await super().headers()

    async def refresh(self) -> None:
        self.renewing = True
        if self.failures:
            raise self.failures.pop(0)
        self.renewing = False
        self.refreshes += 1


async def test_a_refresh_failing_transiently_is_waited_out_and_counted(session, mocked, fake_time) -> None:
    mocked.get(URL, status=401, payload={})
    mocked.get(URL, payload={"ok": 1})
    auth = StumblingAuth([TOKEN, "tok-2"], [
        TransientApiError("test: token 429", api="test", status=429, retry_after=7.0),
        TransientApiError("test: token 503", api="test", status=503),
    ])
    resp = await make(session, fake_time, auth=auth, attempts=2).request("GET", URL)
    assert resp.json() == {"ok": 1}
    assert sent_headers(mocked)[-1]["Authorization"] == "Bearer tok-2"
    assert fake_time.sleeps == [7.0, 0.5]  # the token endpoint's Retry-After, then one backoff


async def test_refresh_failing_transiently_past_the_attempts_gives_up(session, mocked, fake_time) -> None:
    mocked.get(URL, status=401, payload={})
    auth = StumblingAuth([TOKEN], [TransientApiError("test: token 503", api="test", status=503)])
    with pytest.raises(TransientApiError):
        await make(session, fake_time, auth=auth, attempts=1).request("GET", URL)


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422])
async def test_other_4xx_is_rejected_with_the_api_detail(session, mocked, fake_time, status) -> None:
    body = {"errors": [{"title": "Invalid", "detail": f"access_token={TOKEN} is wrong"}]}
    mocked.get(URL + "&access_token=" + TOKEN, status=status, payload=body)
    with pytest.raises(RejectedError) as info:
        await make(session, fake_time, auth=FakeAuth([TOKEN])).request("GET", URL + "&access_token=" + TOKEN)
    err = info.value
    assert err.status == status and "Invalid" in err.detail
    assert TOKEN not in str(err) and TOKEN not in err.detail and TOKEN not in err.path
    assert str(err).startswith(f"test GET /api/v2/things?page[size]=10&access_token=[REDACTED]: {status} Invalid")
    assert fake_time.sleeps == []


async def test_custom_error_parser_is_used(session, mocked, fake_time) -> None:
    mocked.get(URL, status=422, payload={"x": "y"})
    tr = Transport(session, HttpConfig(api="z"), auth=None, error_parser=lambda r: f"parsed {r.status}")
    with pytest.raises(RejectedError, match="422 parsed 422"):
        await tr.request("GET", URL)


async def test_broken_error_parser_does_not_hide_the_status(session, mocked, fake_time) -> None:
    def broken(r: Response) -> str:
        raise KeyError("bug")

    mocked.get(URL, status=404, payload={})
    tr = Transport(session, HttpConfig(api="z"), auth=None, error_parser=broken)
    with pytest.raises(RejectedError) as info:
        await tr.request("GET", URL)
    assert info.value.status == 404


async def test_malformed_json_is_retried_then_succeeds(session, mocked, fake_time) -> None:
    mocked.get(URL, body=b'{"data": [', content_type="application/vnd.api+json")
    mocked.get(URL, payload={"data": []})
    events: list[RequestEvent] = []
    resp = await make(session, fake_time, events=events).request("GET", URL)
    assert resp.json() == {"data": []}
    assert [e.error for e in events] == ["malformed_body", None]
    assert fake_time.sleeps == [0.5]


async def test_non_json_content_is_returned_raw_and_json_raises_transient(session, mocked, fake_time) -> None:
    mocked.get(URL, body=b"<html>hi</html>", content_type="text/html")
    resp = await make(session, fake_time).request("GET", URL)
    assert resp.body == b"<html>hi</html>"
    with pytest.raises(TransientApiError):
        resp.json()


async def test_hook_failure_does_not_break_requests(session, mocked, fake_time) -> None:
    def bad_hook(event: RequestEvent) -> None:
        raise RuntimeError("metrics down")

    mocked.get(URL, payload={"ok": 1})
    tr = Transport(session, HttpConfig(api="z"), auth=None, hooks=[bad_hook])
    assert (await tr.request("GET", URL)).json() == {"ok": 1}


async def test_hook_events_carry_redacted_path_and_timing(session, mocked, fake_time) -> None:
    url = URL + "&token=" + TOKEN
    mocked.get(url, payload={})
    events: list[RequestEvent] = []
    await make(session, fake_time, events=events).request("GET", url)
    (event,) = events
    assert (event.api, event.method, event.status, event.error) == ("test", "GET", 200, None)
    assert TOKEN not in event.path and event.path.startswith("/api/v2/things")
    assert event.seconds >= 0


async def test_a_number_too_long_for_an_int_is_kept_as_its_digits(session, mocked, fake_time) -> None:
    """One record's 5,000-digit number must reach translation (its dead letter), not fail the
    whole answer as unreadable JSON and be retried until the run ends."""
    digits = "9" * 5000
    body = '{"data": [{"id": 1, "speed": ' + digits + '}, {"id": 2, "speed": 88}]}'
    mocked.get(URL, body=body, headers={"Content-Type": "application/json"})
    resp = await make(session, fake_time).request("GET", URL)
    assert resp.json()["data"] == [{"id": 1, "speed": digits}, {"id": 2, "speed": 88}]


async def test_a_write_retried_after_the_guard_trips_is_never_sent(session, mocked, fake_time) -> None:
    """A process that lost its lease while a bulk-job POST was being retried sends no retry."""
    from bridge.errors import LeaseLost
    from bridge.http.guard import guarding

    held = [True]

    def lease_check() -> None:
        if not held[0]:
            raise LeaseLost("test: lease gone")

    def lose_lease_on_first_answer(url: Any, **kwargs: Any) -> CallbackResult:
        held[0] = False
        return CallbackResult(status=503, payload={"error": "busy"})

    mocked.post(URL, callback=lose_lease_on_first_answer)
    mocked.post(URL, payload={"ok": 1})
    mocked.get(URL, payload={"ok": 1})
    tr = make(session, fake_time)
    with guarding(lease_check):
        with pytest.raises(LeaseLost):
            await tr.request("POST", URL, json={"job": 1})
        assert (await tr.request("GET", URL)).json() == {"ok": 1}  # reading stays allowed
    assert len(mocked.requests[("POST", normalize_url(URL))]) == 1
