"""The composition root: Settings in, connected clients and a database pool out.

`cli.py`, `worker.py` and `demo.py` read `Settings`; they all build their objects here, so
there is one place that decides which credentials win and how the pieces are put together.
Nothing below this module sees `Settings`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import asyncpg

from bridge import embedded_pg
from bridge.directory import Directory
from bridge.errors import ConfigError
from bridge.http.ratelimit import RateLimiter
from bridge.http.retry import RetryPolicy
from bridge.http.transport import Auth, ErrorParser, HttpConfig, RequestEvent, Transport
from bridge.metrics import Metrics
from bridge.outreach import auth as outreach_auth
from bridge.outreach.client import OutreachClient, OutreachConfig, outreach_error_detail
from bridge.pipeline.sync import Services
from bridge.settings import Settings
from bridge.store import pool as store_pool
from bridge.store.crypto import TokenCipher
from bridge.store.tokens import PgTokenStore
from bridge.zendesk import auth as zendesk_auth
from bridge.zendesk.client import ZendeskClient, ZendeskConfig, zendesk_error_detail
from bridge.zendesk.exports import ExportPacer, IncrementalExports

# A refresh waits this long at most for the exports' own limit (a 429's Retry-After) before it
# gives up until the next refresh, which resumes from the saved cursor: a run never waits long.
EXPORT_WAIT_SECONDS = 15.0


@dataclass(slots=True)
class RequestTally:
    """Requests sent per API, for the run summary (metrics come later from the same hook)."""

    outreach: int = 0
    zendesk: int = 0

    def __call__(self, event: RequestEvent) -> None:
        if event.api == "outreach":
            self.outreach += 1
        else:
            self.zendesk += 1


def database_dsn(settings: Settings) -> str:
    """DATABASE_URL, or the embedded Postgres under BRIDGE_DATA_DIR for local use."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return embedded_pg.start_embedded(settings.bridge_data_dir)


@asynccontextmanager
async def open_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await store_pool.create_pool(database_dsn(settings))
    try:
        yield pool
    finally:
        await pool.close()


@asynccontextmanager
async def open_services(
    settings: Settings,
    pool: asyncpg.Pool,
    tally: RequestTally | None = None,
    metrics: Metrics | None = None,
) -> AsyncIterator[Services]:
    """Both API clients over one HTTP session, sharing the pool for the token store."""
    hooks: list[Callable[[RequestEvent], None]] = [tally] if tally is not None else []
    limiters = {"outreach": RateLimiter(), "zendesk": RateLimiter()}
    if metrics is not None:  # the worker's /metrics: every request, and rate-limit waits
        hooks.append(metrics.observe_request)
        for api, limiter in limiters.items():
            metrics.track_limiter(api, limiter)
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:
        outreach = OutreachClient(
            _transport(session, settings, "outreach", _outreach_auth(settings, session, pool),
                       limiters["outreach"], outreach_error_detail, hooks),  # fmt: skip
            OutreachConfig(api_url=settings.outreach_api_url, page_size=settings.bridge_page_size),
        )
        zendesk_url = settings.zendesk_base_url()
        zendesk_auth_ = _zendesk_auth(settings, session, zendesk_url)
        zendesk = ZendeskClient(
            _transport(session, settings, "zendesk", zendesk_auth_,
                       limiters["zendesk"], zendesk_error_detail, hooks),  # fmt: skip
            ZendeskConfig(base_url=zendesk_url, max_jobs_in_flight=settings.bridge_job_concurrency),
        )
        # The exports' own transport, on the account's one limiter (a 429 holds every Zendesk
        # request, as Zendesk's does): a wait longer than EXPORT_WAIT_SECONDS ends the refresh
        # instead of holding up the run (the next refresh resumes from the saved cursor).
        exports = IncrementalExports(
            _transport(session, settings, "zendesk", zendesk_auth_, limiters["zendesk"],
                       zendesk_error_detail, hooks, deadline=EXPORT_WAIT_SECONDS),  # fmt: skip
            zendesk_url,
            pacer=ExportPacer(settings.bridge_directory_exports_per_minute),
        )
        yield Services(outreach=outreach, zendesk=zendesk, pool=pool,
                       directory=Directory(pool, exports, zendesk))  # fmt: skip


def _transport(
    session: aiohttp.ClientSession,
    settings: Settings,
    api: str,
    auth: Auth,
    limiter: RateLimiter,
    error_parser: ErrorParser,
    hooks: list[Callable[[RequestEvent], None]],
    *,
    deadline: float | None = None,
) -> Transport:
    """One API's request loop: the same timeouts and retries for both, their own limiter."""
    config = HttpConfig(
        api=api, timeout=settings.bridge_http_timeout, max_attempts=settings.bridge_max_attempts,
        deadline=min(settings.bridge_request_deadline_seconds, deadline or float("inf")),
    )
    retry = RetryPolicy(max_attempts=settings.bridge_max_attempts)
    return Transport(
        session, config, auth=auth, retry=retry, limiter=limiter, error_parser=error_parser,
        hooks=hooks,
    )


def _outreach_auth(settings: Settings, session: aiohttp.ClientSession, pool: asyncpg.Pool) -> Auth:
    if settings.outreach_access_token is not None:
        return outreach_auth.StaticToken(settings.outreach_access_token.get_secret_value())
    missing = [
        name
        for name, value in (
            ("OUTREACH_CLIENT_ID", settings.outreach_client_id),
            ("OUTREACH_CLIENT_SECRET", settings.outreach_client_secret),
            ("OUTREACH_REFRESH_TOKEN", settings.outreach_refresh_token),
            ("BRIDGE_SECRET_KEY", settings.bridge_secret_key),
        )
        if value is None
    ]
    if missing:
        raise ConfigError(
            "Outreach credentials are incomplete: set OUTREACH_ACCESS_TOKEN, or all of "
            f"OUTREACH_CLIENT_ID, OUTREACH_CLIENT_SECRET, OUTREACH_REFRESH_TOKEN and "
            f"BRIDGE_SECRET_KEY (missing: {', '.join(missing)})"
        )
    assert settings.outreach_client_id and settings.outreach_client_secret
    assert settings.outreach_refresh_token and settings.bridge_secret_key
    store = PgTokenStore(pool, TokenCipher(settings.bridge_secret_key.get_secret_value()))
    return outreach_auth.OAuthRefresh(
        session,
        token_url=settings.outreach_api_url.rstrip("/") + "/oauth/token",
        client_id=settings.outreach_client_id,
        client_secret=settings.outreach_client_secret.get_secret_value(),
        refresh_token=settings.outreach_refresh_token.get_secret_value(),
        store=store,
    )


def _zendesk_auth(settings: Settings, session: aiohttp.ClientSession, base_url: str) -> Auth:
    if settings.zendesk_client_id and settings.zendesk_client_secret:
        return zendesk_auth.ClientCredentials(
            session,
            token_url=f"{base_url}/oauth/tokens",
            client_id=settings.zendesk_client_id,
            client_secret=settings.zendesk_client_secret.get_secret_value(),
        )
    if settings.zendesk_oauth_token is not None:
        return zendesk_auth.BearerToken(settings.zendesk_oauth_token.get_secret_value())
    if settings.zendesk_email and settings.zendesk_api_token is not None:
        return zendesk_auth.LegacyApiToken(
            settings.zendesk_email, settings.zendesk_api_token.get_secret_value()
        )
    raise ConfigError(
        "Zendesk credentials are missing: set ZENDESK_CLIENT_ID and ZENDESK_CLIENT_SECRET "
        "(OAuth client credentials, recommended), or ZENDESK_OAUTH_TOKEN, or ZENDESK_EMAIL and "
        "ZENDESK_API_TOKEN (legacy; API tokens stop working on 2027-04-30)"
    )
