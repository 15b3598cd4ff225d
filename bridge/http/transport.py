"""The one request loop both API clients use, and the one place aiohttp errors become ours.

`Transport.request` runs, per attempt: wait for the rate limiter → add auth headers → send →
update the limiter from the response → classify. 2xx/3xx return; a 401 triggers one
`auth.refresh()` and a resend (a second 401 is an `AuthError`; a refresh that fails
transiently, its token endpoint answering 429 or 5xx, is waited out like a failed send, and
the resend's `auth.headers()` renews again); 429, 5xx, 408, timeouts,
dropped connections and unreadable JSON bodies are `TransientApiError`s retried as
`RetryPolicy` says; any other 4xx is a `RejectedError`. A 429 is flow control: it is waited
out (its Retry-After, else backoff) without spending an attempt, and its wait pauses the
shared limiter, so no request to that API goes out before it has passed (the limits are
account-wide). Failures spend attempts. Both kinds of wait stop at the request's deadline
(`HttpConfig.deadline`, counted from the first send): a wait that would end past it is not
started, and the error says which limit ran out.

Invariants: every aiohttp/asyncio failure leaves here as a `bridge.errors.ApiError`, chained
`from` the original; messages read "<api> <METHOD> <redacted path>: <status> <detail>; <what
to do>" and never carry headers, tokens or bodies (detail comes from an `ErrorParser`, which
redacts). The loop is plain code, not aiohttp middleware, so aioresponses exercises all of it.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import structlog

from bridge.errors import ApiError, AuthError, RejectedError, TransientApiError
from bridge.http import guard, jsonbody
from bridge.http.ratelimit import RateLimiter
from bridge.http.retry import RetryPolicy, parse_retry_after
from bridge.redact import redact_text, redact_url

log = structlog.get_logger(__name__)

ErrorParser = Callable[["Response"], str]

_UNPARSED: Any = object()


@dataclass(frozen=True, slots=True)
class HttpConfig:
    api: str  # "outreach" | "zendesk": used in errors, logs, metrics
    timeout: float = 30.0  # per request, seconds
    max_attempts: int = 6  # failed attempts (5xx, 408, network); 429s spend none
    deadline: float = 600.0  # seconds from the first send within which every wait must end


class Auth(Protocol):
    async def headers(self) -> dict[str, str]: ...

    async def refresh(self) -> None:
        """Called after a 401; raises AuthError if the credentials cannot be renewed."""
        ...


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes
    url: str
    api: str = ""
    method: str = ""
    parsed: Any = field(default=_UNPARSED, repr=False, compare=False)

    def json(self) -> Any:
        """The parsed body; an unreadable one is a TransientApiError (retrying is right)."""
        if self.parsed is not _UNPARSED:
            return self.parsed
        try:
            return _loads(self.body)
        except ValueError as exc:
            raise TransientApiError(
                f"{self.api} {self.method} {_where(self.url)}: {self.status} body is not valid "
                "JSON; retry the request, the API may have sent a truncated answer",
                api=self.api, method=self.method, path=_where(self.url), status=self.status,
            ) from exc


@dataclass(frozen=True, slots=True)
class RequestEvent:
    """Handed to hooks after every attempt, for metrics and counters."""

    api: str
    method: str
    path: str
    status: int | None
    seconds: float
    error: str | None  # None when the attempt's answer was returned; else a short kind


def generic_error_detail(response: Response) -> str:
    """The error detail of a body in any of the common shapes, redacted and short."""
    try:
        body = jsonlib.loads(response.body)
    except ValueError:
        text = response.body[:400].decode("utf-8", "replace").strip()
        return "" if text.startswith("<") else _short(text.splitlines()[0] if text else "")
    return _short(_json_detail(body))


def _json_detail(body: Any) -> str:
    if isinstance(body, list):
        return "; ".join(filter(None, (_json_detail(item) for item in body[:5])))
    if not isinstance(body, dict):
        return ""
    if "errors" in body:
        return _json_detail(body["errors"])
    parts = [body.get(key) for key in ("error", "code", "title", "message", "description", "detail")]
    strings = [p for p in parts if isinstance(p, str) and p]
    if isinstance(body.get("error"), dict):
        strings.insert(0, _json_detail(body["error"]))
    return ": ".join(dict.fromkeys(strings))


def _short(text: str, limit: int = 300) -> str:
    text = redact_text(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Unauthorized(Exception):
    """A 401, handled by the loop (refresh once and resend), never seen by callers."""

    def __init__(self, response: Response) -> None:
        self.response = response


class Transport:
    """Sends requests for one API with auth, pacing, retries and error translation."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: HttpConfig,
        *,
        auth: Auth | None,
        retry: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        error_parser: ErrorParser = generic_error_detail,
        hooks: Sequence[Callable[[RequestEvent], None]] = (),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self.config = config
        self._auth = auth
        # config.max_attempts only shapes the default policy; a given policy brings its own
        self._retry = retry or RetryPolicy(max_attempts=config.max_attempts)
        self._limiter = limiter
        self._error_parser = error_parser
        self._hooks = tuple(hooks)
        self._sleep = sleep
        self._clock = clock
        self._wall = wall

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        authenticated: bool = True,
    ) -> Response:
        """Sends until success, a permanent error, or the attempts or the deadline run out."""
        body, extra = _encode_body(json)
        call = _Call(method.upper(), url, body, data, params, {**extra, **(headers or {})})
        use_auth = authenticated and self._auth is not None
        started = self._clock()
        attempt, waits, refreshed = 0, 0, False
        while True:
            attempt += 1
            try:
                return await self._attempt(call, use_auth)
            except TransientApiError as err:
                if self._retry.is_flow_control(err):
                    attempt -= 1  # a 429 is the server pacing us, not a failed attempt
                    waits += 1
                await self._back_off(call, err, started, attempt=attempt, waits=waits)
            except _Unauthorized as unauthorized:
                if not use_auth or refreshed or self._auth is None:
                    raise self._auth_error(call, unauthorized.response, refreshed) from None
                refreshed = True
                attempt -= 1  # the resend after a refresh is not a retry
                try:
                    await self._auth.refresh()
                except TransientApiError as err:  # the token endpoint's 429 or 5xx: wait it out
                    attempt, waits = await self._after_failed_refresh(
                        call, err, started, attempt=attempt, waits=waits
                    )

    async def _after_failed_refresh(
        self, call: _Call, err: TransientApiError, started: float, *, attempt: int, waits: int
    ) -> tuple[int, int]:
        """Counts and waits out a refresh that failed transiently, as if the send had; the
        next attempt's `auth.headers()` renews again. (attempt, waits) as they now stand."""
        if self._retry.is_flow_control(err):
            waits += 1
        else:
            attempt += 1
        await self._back_off(call, err, started, attempt=attempt, waits=waits)
        return attempt, waits

    async def _back_off(
        self, call: _Call, err: TransientApiError, started: float, *, attempt: int, waits: int
    ) -> None:
        """Waits before the next send, or raises when the attempts or the deadline ran out."""
        if self._retry.is_flow_control(err):
            delay: float | None = self._retry.pause(waits, err)
        else:
            delay = self._retry.delay(attempt, err)
        elapsed = self._clock() - started
        if delay is None:
            why = (
                f"gave up after {attempt} attempts in {_seconds(elapsed)}s; the API keeps failing, "
                "try again later (BRIDGE_MAX_ATTEMPTS sets the attempts)"
            )
            raise self._exhausted(call, err, why) from (err.__cause__ or err)
        if elapsed + delay > self.config.deadline:
            why = (
                f"still refused after {_seconds(elapsed)}s and the next wait ({_seconds(delay)}s) "
                f"would pass the request deadline of {_seconds(self.config.deadline)}s; try again "
                "later, or raise BRIDGE_REQUEST_DEADLINE_SECONDS"
            )
            raise self._exhausted(call, err, why) from (err.__cause__ or err)
        log.info(
            "http_retry", api=self.config.api, method=err.method, path=err.path,
            status=err.status, attempt=attempt, waits=waits, delay=round(delay, 3),
        )
        if err.status == 429 and self._limiter is not None:
            # Rate limited: the limiter holds every request (and counts the wait for /metrics).
            self._limiter.pause_for(delay)
            return
        await self._sleep(delay)

    def _exhausted(self, call: _Call, err: TransientApiError, why: str) -> TransientApiError:
        """The last error again, its advice replaced by which limit ran out and what to do."""
        head = _message(self.config.api, call, err.status, err.detail, why) if err.detail else (
            f"{err} ({why})"
        )
        return TransientApiError(
            head, retry_after=err.retry_after, api=err.api or self.config.api,
            method=err.method or call.method, path=err.path or _where(call.url), status=err.status,
            detail=err.detail,
        )

    async def _attempt(self, call: _Call, use_auth: bool) -> Response:
        if use_auth and self._auth is not None:
            # A token that must be fetched is fetched now, before this request's send time, so
            # the send time is not spent waiting on the token request (which has its own).
            await self._auth.headers()
        if self._limiter is not None:
            await self._limiter.wait()
        guard.check_write(call.method)  # after the wait: a lease may have gone meanwhile
        headers = dict(call.headers)
        if use_auth and self._auth is not None:
            headers.update(await self._auth.headers())
        started = self._clock()
        response = await self._send(call, headers, started)
        if self._limiter is not None:
            self._limiter.update(response.headers)
        try:
            answer = self._classify(call, response)
        except _Unauthorized:
            self._emit(call, response.status, started, "unauthorized")
            raise
        except ApiError:
            self._emit(call, response.status, started, _status_kind(response.status))
            raise
        self._emit(call, response.status, started, None)
        return answer

    async def _send(self, call: _Call, headers: dict[str, str], started: float) -> Response:
        """One HTTP exchange; every aiohttp/asyncio failure is translated here."""
        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        try:
            async with self._session.request(
                call.method, call.url, data=call.body if call.body is not None else call.data,
                params=call.params, headers=headers, timeout=timeout,
                allow_redirects=False,  # a redirect must not carry the token to another host
            ) as raw:
                body = await raw.read()
                return Response(
                    raw.status, raw.headers.copy(), body, str(raw.url),
                    self.config.api, call.method,
                )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            kind = "timeout" if isinstance(exc, TimeoutError) else "connection"
            self._emit(call, None, started, kind)
            raise self._network_error(call, exc) from exc

    def _classify(self, call: _Call, response: Response) -> Response:
        status = response.status
        if status < 400:
            try:
                return _with_json(response)
            except ValueError as exc:
                raise self._transient(call, response, "body is not valid JSON") from exc
        if status == 401:
            raise _Unauthorized(response)
        if status == 429 or status >= 500 or status == 408:
            raise self._retryable(call, response)
        raise self._rejected(call, response)

    def _retryable(self, call: _Call, response: Response) -> TransientApiError:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), self._wall())
        if response.status == 429 and retry_after is not None and self._limiter is not None:
            self._limiter.pause_for(retry_after)
        detail = self._detail(response)
        what = "rate limited" if response.status == 429 else "server error"
        return self._transient(call, response, f"{detail or what}", retry_after)

    def _transient(
        self, call: _Call, response: Response, detail: str, retry_after: float | None = None
    ) -> TransientApiError:
        todo = "will retry; try again later if this persists"
        return TransientApiError(
            _message(self.config.api, call, response.status, detail, todo),
            retry_after=retry_after, api=self.config.api, method=call.method,
            path=_where(call.url), status=response.status, detail=detail,
        )

    def _rejected(self, call: _Call, response: Response) -> RejectedError:
        detail = self._detail(response)
        todo = _REJECTED_TODO.get(response.status, "the request was refused; check it")
        return RejectedError(
            _message(self.config.api, call, response.status, detail, todo), api=self.config.api,
            method=call.method, path=_where(call.url), status=response.status, detail=detail,
        )

    def _auth_error(self, call: _Call, response: Response, refreshed: bool) -> AuthError:
        detail = self._detail(response)
        todo = (
            "credentials refused even after a refresh; check the token and its scopes"
            if refreshed else "credentials refused; check the configured credentials"
        )
        return AuthError(
            _message(self.config.api, call, 401, detail, todo), api=self.config.api,
            method=call.method, path=_where(call.url), status=401, detail=detail,
        )

    def _network_error(self, call: _Call, exc: BaseException) -> ApiError:
        api, path = self.config.api, _where(call.url)
        if isinstance(exc, (aiohttp.InvalidURL, aiohttp.TooManyRedirects)):
            what, todo = type(exc).__name__, "check the configured API URL"
            return ApiError(_message(api, call, None, what, todo), api=api, method=call.method,
                            path=path, detail=what)
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            what, todo = "TLS certificate not trusted", "check the API URL and CA certificates"
            return ApiError(_message(api, call, None, what, todo), api=api, method=call.method,
                            path=path, detail=what)
        if isinstance(exc, TimeoutError):
            what = f"no response within {self.config.timeout:g}s"
        else:
            what = f"connection failed ({type(exc).__name__})"
        todo = "will retry; check the network if this persists"
        return TransientApiError(
            _message(api, call, None, what, todo), api=api, method=call.method, path=path,
            detail=what,
        )

    def _detail(self, response: Response) -> str:
        try:
            return self._error_parser(response)
        except Exception:  # a parser bug must not hide the API's status
            log.warning("error_parser_failed", api=self.config.api, status=response.status)
            return ""

    def _emit(self, call: _Call, status: int | None, started: float, error: str | None) -> None:
        event = RequestEvent(
            self.config.api, call.method, _where(call.url), status,
            self._clock() - started, error,
        )
        for hook in self._hooks:
            try:
                hook(event)
            except Exception:  # metrics must never break a request
                log.warning("request_hook_failed", api=event.api, hook=repr(hook))


@dataclass(frozen=True, slots=True)
class _Call:
    method: str
    url: str
    body: bytes | None
    data: Mapping[str, str] | None
    params: Mapping[str, str] | None
    headers: Mapping[str, str]


_REJECTED_TODO = {
    400: "the API refused the request as malformed; check the mapping and filters",
    403: "forbidden; check the credentials' scopes and permissions",
    404: "not found; check the object type, id or URL",
    409: "conflict; the record changed concurrently, it will be retried on the next run",
    415: "unsupported media type; this is a bridge bug, please report it",
    422: "the API refused the data; check the mapping",
}


def _encode_body(payload: Any) -> tuple[bytes | None, dict[str, str]]:
    if payload is None:
        return None, {}
    return jsonlib.dumps(payload).encode(), {"Content-Type": "application/json"}


def _loads(body: bytes) -> Any:
    return jsonbody.loads(body)


def _with_json(response: Response) -> Response:
    """Parses JSON bodies inside the loop, so a garbled one is retried like a 5xx.

    Raises ValueError for a body that says it is JSON (or says nothing) and is not.
    """
    content_type = response.headers.get("Content-Type", "")
    if not response.body.strip() or (content_type and "json" not in content_type.lower()):
        return response
    parsed = _loads(response.body)
    return Response(
        response.status, response.headers, response.body, response.url,
        response.api, response.method, parsed,
    )


def _status_kind(status: int) -> str:
    if status < 400:
        return "malformed_body"
    if status == 429:
        return "rate_limited"
    return "server_error" if status >= 500 or status == 408 else "rejected"


def _where(url: str) -> str:
    """The redacted path and query of a URL: enough to find the call, no host, no secrets."""
    redacted = redact_url(url)
    rest = redacted.split("://", 1)[-1]
    slash = rest.find("/")
    return rest[slash:] if slash >= 0 else "/"


def _seconds(value: float) -> str:
    return f"{round(value, 1):.10g}"


def _message(api: str, call: _Call, status: int | None, detail: str, todo: str) -> str:
    shown = "" if status is None else f"{status} "
    return f"{api} {call.method} {_where(call.url)}: {shown}{detail}; {todo}"
