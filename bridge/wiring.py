"""The composition root: Settings in, connected clients and a database pool out.

The commands (`cli.py`, `commands/`, `demo.py`) hand `Settings` here and get back clients, the
pool and every options object (sync, leases, reconcile, upkeep, the worker's), so there is one
place that decides which credentials win, what each knob feeds and how the pieces are put
together. Nothing below the commands sees `Settings` or the environment (tests/test_layout.py).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
from pydantic import SecretStr

from bridge import embedded_pg
from bridge.directory import Directory
from bridge.errors import ConfigError
from bridge.http.budget import BudgetPolicy, SharedBudget, SharedSlots
from bridge.http.ratelimit import RateLimiter
from bridge.http.retry import RetryPolicy
from bridge.http.transport import Auth, ErrorParser, HttpConfig, RequestEvent, Transport
from bridge.outreach import auth as outreach_auth
from bridge.outreach import wire as outreach_wire
from bridge.outreach.client import OutreachClient, OutreachConfig
from bridge.pipeline.backfill import LeaseConfig
from bridge.pipeline.services import Services
from bridge.pipeline.sync import SyncOptions
from bridge.settings import Settings
from bridge.store import pool as store_pool
from bridge.store.budget import PgBudgetStore, PgSlotStore
from bridge.store.leases import holder_id
from bridge.zendesk import auth as zendesk_auth
from bridge.zendesk import wire as zendesk_wire
from bridge.zendesk.client import ZendeskClient, ZendeskConfig
from bridge.zendesk.exports import ExportPacer, IncrementalExports
from bridge.zendesk.record_export import RecordExport

if TYPE_CHECKING:  # what only some commands build is imported where it is built
    from bridge.alerts import AlertConfig
    from bridge.metrics import Metrics
    from bridge.pipeline.reconcile import ReconcileOptions
    from bridge.pipeline.redrive import RedriveOptions
    from bridge.pipeline.verify import VerifyOptions
    from bridge.sandbox.seed import SeedInfo
    from bridge.status_check import StatusThresholds
    from bridge.upkeep import UpkeepConfig
    from bridge.worker import WorkerConfig

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


def alert_config(settings: Settings) -> AlertConfig | None:
    """The alert webhook's settings, or None when BRIDGE_ALERT_WEBHOOK_URL is unset (no alerts)."""
    from bridge.alerts import AlertConfig

    if settings.bridge_alert_webhook_url is None:
        return None
    secret = settings.bridge_alert_secret
    return AlertConfig(
        url=settings.bridge_alert_webhook_url.get_secret_value(),
        secret=secret.get_secret_value() if secret is not None else None,
        lag_seconds=settings.bridge_alert_lag_seconds,
        check_seconds=settings.bridge_alert_check_seconds,
        retry_seconds=settings.bridge_alert_retry_seconds,
        max_attempts=settings.bridge_alert_max_attempts,
        timeout_seconds=settings.bridge_alert_timeout_seconds,
    )


def status_thresholds(settings: Settings) -> StatusThresholds:
    """`bridge status --check`'s defaults, before its command-line options."""
    from bridge.status_check import StatusThresholds

    return StatusThresholds(
        max_dead_letters=settings.bridge_check_max_dead_letters,
        max_lag_seconds=settings.bridge_check_max_lag_seconds,
    )


def database_dsn(settings: Settings) -> str:
    """DATABASE_URL, or the embedded Postgres under BRIDGE_DATA_DIR for local use."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return embedded_pg.start_embedded(settings.bridge_data_dir)


@asynccontextmanager
async def open_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await store_pool.create_pool(database_dsn(settings), pgsslmode=settings.pgsslmode)
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
    zendesk_url = settings.zendesk_base_url()
    budgets = shared_budgets(settings, pool, zendesk_url)
    limiters = {api: RateLimiter(budget=budget) for api, budget in budgets.items()}
    job_slots = SharedSlots(
        PgSlotStore(pool), budgets["zendesk"].policy.scope, holder_id("jobs"),
        cap=ZENDESK_JOB_CAP, local_cap=settings.bridge_job_concurrency,
    )
    if metrics is not None:  # the worker's /metrics: every request, and rate-limit waits
        hooks.append(metrics.observe_request)
        for api, limiter in limiters.items():
            metrics.track_limiter(api, limiter)
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:
        outreach = OutreachClient(
            _transport(session, settings, "outreach", _outreach_auth(settings, session, pool),
                       limiters["outreach"], outreach_wire.error_detail, hooks),  # fmt: skip
            OutreachConfig(api_url=settings.outreach_api_url, page_size=settings.bridge_page_size),
        )
        zendesk_auth_ = _zendesk_auth(settings, session, zendesk_url, limiters["zendesk"])
        zendesk = ZendeskClient(
            _transport(session, settings, "zendesk", zendesk_auth_,
                       limiters["zendesk"], zendesk_wire.error_detail, hooks),  # fmt: skip
            ZendeskConfig(base_url=zendesk_url, max_jobs_in_flight=settings.bridge_job_concurrency),
            job_slots=job_slots,
        )
        if metrics is not None:
            metrics.track_jobs(zendesk)
        # The exports' own transport, on the account's one limiter (a 429 holds every Zendesk
        # request, as Zendesk's does): a wait longer than EXPORT_WAIT_SECONDS ends the refresh
        # instead of holding up the run (the next refresh resumes from the saved cursor).
        # One pacer for every incremental export: Zendesk's 10 a minute is shared by them all.
        export_pacer = ExportPacer(settings.bridge_directory_exports_per_minute)
        exports = IncrementalExports(
            _transport(session, settings, "zendesk", zendesk_auth_, limiters["zendesk"],
                       zendesk_wire.error_detail, hooks, deadline=EXPORT_WAIT_SECONDS),  # fmt: skip
            zendesk_url,
            pacer=export_pacer,
        )
        # The record export (`bridge verify`) reads to the end: a 429 is waited out in full.
        record_export = RecordExport(
            _transport(session, settings, "zendesk", zendesk_auth_, limiters["zendesk"],
                       zendesk_wire.error_detail, hooks),  # fmt: skip
            zendesk_url,
            pacer=export_pacer,
        )
        try:
            yield Services(outreach=outreach, zendesk=zendesk, pool=pool,
                           directory=Directory(pool, exports, zendesk),
                           record_export=record_export)  # fmt: skip
        finally:
            await job_slots.aclose()
            for budget in budgets.values():
                await budget.aclose()


# Zendesk allows 30 bulk jobs queued or running per account (api/zendesk.md, "Bulk jobs").
ZENDESK_JOB_CAP = 30


def shared_budgets(settings: Settings, pool: asyncpg.Pool, zendesk_url: str) -> dict[str, SharedBudget]:
    """Each API's budget, shared through Postgres by every process on the same account: Zendesk
    per account (ZENDESK_RATE_LIMIT a minute), Outreach per user (10,000 an hour by default).
    A small burst is allowed after a quiet spell; the rest is spread evenly."""
    zendesk_limit, outreach_limit = settings.zendesk_rate_limit, settings.outreach_rate_limit
    policies = {
        "zendesk": BudgetPolicy(
            f"zendesk:{_host(zendesk_url)}", zendesk_limit, settings.zendesk_rate_window_seconds,
            burst=zendesk_limit // 50,
        ),
        "outreach": BudgetPolicy(
            f"outreach:{_host(settings.outreach_api_url)}", outreach_limit, 3600.0,
            burst=outreach_limit // 20,
        ),
    }
    store = PgBudgetStore(pool)
    return {api: SharedBudget(store, policy) for api, policy in policies.items()}


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


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


def check_api_settings(settings: Settings) -> None:
    """Raises ConfigError for credentials a command talking to both APIs could not use.

    Commands call it before opening the database, so a wrong environment is exit 2 with the
    variable to fix, whatever state the database is in.
    """
    settings.zendesk_base_url()
    _outreach_credentials(settings)
    _zendesk_credentials(settings)


def _outreach_credentials(settings: Settings) -> str:
    """Which Outreach credentials to use: "static" or "refresh"."""
    refresh_vars = (
        ("OUTREACH_CLIENT_ID", settings.outreach_client_id),
        ("OUTREACH_CLIENT_SECRET", settings.outreach_client_secret),
        ("OUTREACH_REFRESH_TOKEN", settings.outreach_refresh_token),
    )
    if settings.outreach_access_token is not None:
        if settings.outreach_refresh_token is not None:
            raise ConfigError(
                "OUTREACH_ACCESS_TOKEN and OUTREACH_REFRESH_TOKEN are both set, and bridge uses one kind "
                "of Outreach credentials: unset OUTREACH_ACCESS_TOKEN to use OAuth refresh (recommended: "
                "an access token expires within hours), or unset OUTREACH_REFRESH_TOKEN"
            )
        return "static"
    missing = [name for name, value in refresh_vars if value is None]
    if len(missing) == len(refresh_vars):
        raise ConfigError(
            "Outreach credentials are missing: set OUTREACH_CLIENT_ID, OUTREACH_CLIENT_SECRET and "
            "OUTREACH_REFRESH_TOKEN from your Outreach OAuth app (with BRIDGE_SECRET_KEY), or "
            "OUTREACH_ACCESS_TOKEN for a short test (see the README, \"From the demo to your own accounts\")"
        )
    if missing:
        missing += ["BRIDGE_SECRET_KEY"] if settings.bridge_secret_key is None else []
        raise ConfigError(
            f"Outreach credentials are incomplete (missing: {', '.join(missing)}): OAuth refresh needs "
            "the OAuth app's client id and secret, the refresh token of an authorisation and "
            "BRIDGE_SECRET_KEY to encrypt the tokens it stores; set them all, or OUTREACH_ACCESS_TOKEN "
            "alone instead"
        )
    if settings.bridge_secret_key is None:
        raise ConfigError(
            "BRIDGE_SECRET_KEY is not set; OAuth refresh stores the rotated Outreach tokens in "
            "Postgres encrypted with it. Generate one with `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`, set BRIDGE_SECRET_KEY to it and keep it (the "
            "stored tokens cannot be read without it)"
        )
    return "refresh"


def _zendesk_credentials(settings: Settings) -> str:
    """Which Zendesk credentials to use: "client", "bearer" or "legacy"."""
    if settings.zendesk_client_id and settings.zendesk_client_secret:
        return "client"
    if settings.zendesk_oauth_token is not None:
        return "bearer"
    if settings.zendesk_email and settings.zendesk_api_token is not None:
        return "legacy"
    for (a, a_value), (b, b_value), what in (
        (("ZENDESK_CLIENT_ID", settings.zendesk_client_id),
         ("ZENDESK_CLIENT_SECRET", settings.zendesk_client_secret), "the OAuth client's identifier and secret"),
        (("ZENDESK_EMAIL", settings.zendesk_email),
         ("ZENDESK_API_TOKEN", settings.zendesk_api_token), "an agent's email and an API token"),
    ):  # fmt: skip
        if (a_value is None) != (b_value is None):
            have, lack = (a, b) if b_value is None else (b, a)
            raise ConfigError(f"{have} is set but {lack} is not; set both ({what})")
    raise ConfigError(
        "Zendesk credentials are missing: set ZENDESK_CLIENT_ID and ZENDESK_CLIENT_SECRET "
        "(OAuth client credentials, recommended), or ZENDESK_OAUTH_TOKEN, or ZENDESK_EMAIL and "
        "ZENDESK_API_TOKEN (legacy; API tokens stop working on 2027-04-30)"
    )


def _outreach_auth(settings: Settings, session: aiohttp.ClientSession, pool: asyncpg.Pool) -> Auth:
    from bridge.store.crypto import TokenCipher
    from bridge.store.tokens import PgTokenStore

    if _outreach_credentials(settings) == "static":
        assert settings.outreach_access_token is not None
        return outreach_auth.StaticToken(settings.outreach_access_token.get_secret_value())
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


def _zendesk_auth(
    settings: Settings,
    session: aiohttp.ClientSession,
    base_url: str,
    limiter: RateLimiter | None = None,
) -> Auth:
    kind = _zendesk_credentials(settings)
    if kind == "client":
        assert settings.zendesk_client_id and settings.zendesk_client_secret
        return zendesk_auth.ClientCredentials(
            session,
            token_url=f"{base_url}/oauth/tokens",
            client_id=settings.zendesk_client_id,
            client_secret=settings.zendesk_client_secret.get_secret_value(),
            timeout=settings.bridge_http_timeout,
            limiter=limiter,
        )
    if kind == "bearer":
        assert settings.zendesk_oauth_token is not None
        return zendesk_auth.BearerToken(settings.zendesk_oauth_token.get_secret_value())
    assert settings.zendesk_email and settings.zendesk_api_token is not None
    return zendesk_auth.LegacyApiToken(settings.zendesk_email, settings.zendesk_api_token.get_secret_value())


# Options: every object below the commands gets its settings from these, never from Settings.
def actor(settings: Settings, default: str = "cli") -> str:
    """Who ran a command, for the audit trail in the run history: the login name, if known."""
    return settings.user or default


def sync_options(settings: Settings, kind: str, actor: str, **run: Any) -> SyncOptions:
    """One run's options; `run` holds the command's own choices (full, since, dry_run)."""
    return SyncOptions(
        kind=kind, actor=actor, overlap=timedelta(seconds=settings.bridge_overlap_seconds),
        batch_size=settings.bridge_batch_size, job_concurrency=settings.bridge_job_concurrency,
        queue_pages=settings.bridge_queue_pages, pages_in_flight=settings.bridge_pages_in_flight, **run,
    )  # fmt: skip


def lease_config(settings: Settings, holder: str) -> LeaseConfig:
    return LeaseConfig(holder, settings.bridge_lease_ttl_seconds, settings.bridge_lease_wait_seconds)


def reconcile_options(settings: Settings, actor: str, *, job_concurrency: int | None = None,
                      **run: Any) -> ReconcileOptions:  # fmt: skip
    from bridge.pipeline.reconcile import ReconcileOptions

    return ReconcileOptions(
        actor=actor, max_delete_share=settings.bridge_reconcile_max_delete_share,
        page_size=settings.bridge_reconcile_page_size,
        job_concurrency=job_concurrency or settings.bridge_job_concurrency, **run,
    )  # fmt: skip


def redrive_options(settings: Settings, actor: str) -> RedriveOptions:
    """`bridge dead-letters retry`: every letter now, whatever its attempts and backoff."""
    from bridge.pipeline.redrive import RedriveOptions

    return RedriveOptions(actor=actor, batch_size=settings.bridge_batch_size)


def verify_options(settings: Settings, actor: str, *, job_concurrency: int | None = None) -> VerifyOptions:
    """`bridge verify --repair`: how the rewrites are sent."""
    from bridge.pipeline.verify import VerifyOptions

    return VerifyOptions(actor=actor, batch_size=settings.bridge_batch_size,
                         job_concurrency=job_concurrency or settings.bridge_job_concurrency,
                         settle=timedelta(seconds=settings.bridge_verify_settle_seconds))  # fmt: skip


def upkeep_config(settings: Settings, actor: str = "worker") -> UpkeepConfig:
    from bridge.pipeline.redrive import RedriveOptions
    from bridge.upkeep import UpkeepConfig

    concurrency = min(settings.bridge_job_concurrency, 4)  # upkeep stays in the background
    return UpkeepConfig(
        every_seconds=settings.bridge_upkeep_every_seconds,
        reconcile_every_seconds=settings.bridge_reconcile_every_seconds,
        reconcile=reconcile_options(settings, actor, job_concurrency=concurrency),
        redrive=RedriveOptions(
            actor=actor, max_attempts=settings.bridge_dead_letter_max_attempts,
            backoff=timedelta(seconds=settings.bridge_dead_letter_backoff_seconds),
            backoff_max=timedelta(seconds=settings.bridge_dead_letter_backoff_max_seconds),
            batch_size=settings.bridge_batch_size, job_concurrency=concurrency,
        ),
        batch_size=settings.bridge_batch_size,
        job_concurrency=concurrency,
        changelog_retention=timedelta(days=settings.bridge_changelog_days),
        verify=verify_options(settings, actor, job_concurrency=concurrency),
    )  # fmt: skip


def worker_config(settings: Settings, holder: str) -> WorkerConfig:
    from bridge.scheduler import ScheduleConfig
    from bridge.webhooks.consumer import ConsumerOptions
    from bridge.worker import WorkerConfig

    return WorkerConfig(
        port=settings.port,
        webhook_secret=settings.webhook_secret(),
        consumer=ConsumerOptions(
            actor=holder, hold=timedelta(seconds=2 * settings.bridge_lease_ttl_seconds),
            batch_size=settings.bridge_batch_size, job_concurrency=settings.bridge_job_concurrency,
            watch_every=timedelta(seconds=settings.bridge_upkeep_every_seconds),
        ),
        public_url=settings.bridge_public_url,
        lease_ttl=settings.bridge_lease_ttl_seconds,
        stop_timeout=settings.bridge_stop_timeout_seconds,
        sync=sync_options(settings, "worker", holder),
        schedule=ScheduleConfig(
            jitter_seconds=settings.bridge_schedule_jitter_seconds,
            backoff_seconds=settings.bridge_backoff_seconds,
            backoff_max_seconds=settings.bridge_backoff_max_seconds,
            # Reconcile is checked on the upkeep tick, so the tick is never the longer one.
            upkeep_seconds=min(
                settings.bridge_upkeep_every_seconds, settings.bridge_reconcile_every_seconds
            ),
        ),
        upkeep=upkeep_config(settings, actor=holder),
        alerts=alert_config(settings),
        directory_refresh_seconds=settings.bridge_directory_refresh_seconds,
    )

# The sandbox's environment: `bridge demo` runs on these settings, `bridge sandbox` prints them.
SANDBOX_ENV = (
    "DATABASE_URL", "BRIDGE_MAPPINGS", "BRIDGE_SECRET_KEY", "BRIDGE_PAGE_SIZE",
    "OUTREACH_API_URL", "OUTREACH_CLIENT_ID", "OUTREACH_CLIENT_SECRET", "OUTREACH_REFRESH_TOKEN",
    "ZENDESK_URL", "ZENDESK_CLIENT_ID", "ZENDESK_CLIENT_SECRET",
)  # fmt: skip


def sandbox_settings(settings: Settings, urls: tuple[str, str], seed: SeedInfo, dsn: str) -> Settings:
    """`settings` pointed at a seeded sandbox (Outreach URL, Zendesk URL) and database `dsn`.

    The credentials are the kinds a real account uses (Outreach OAuth refresh with an
    encryption key, Zendesk client credentials), so the sandbox exercises the same paths;
    every other credential is cleared, so a token in the user's environment cannot win.
    """
    outreach_url, zendesk_url = urls
    return settings.model_copy(
        update={
            "database_url": SecretStr(dsn),
            "bridge_mappings": settings.bridge_mappings.resolve(),
            "bridge_secret_key": SecretStr(secrets.token_urlsafe(32)),
            "bridge_page_size": 100,
            "outreach_api_url": outreach_url,
            "outreach_access_token": None,
            "outreach_client_id": seed.outreach_client_id,
            "outreach_client_secret": SecretStr(seed.outreach_client_secret),
            "outreach_refresh_token": SecretStr(seed.outreach_refresh_token),
            "zendesk_url": zendesk_url,
            "zendesk_subdomain": None,
            "zendesk_client_id": seed.zendesk_client_id,
            "zendesk_client_secret": SecretStr(seed.zendesk_client_secret),
            "zendesk_oauth_token": None,
            "zendesk_email": None,
            "zendesk_api_token": None,
        }
    )


def settings_env(settings: Settings, names: tuple[str, ...] = SANDBOX_ENV) -> dict[str, str]:
    """The environment variables that give another process these values of `settings`."""
    env: dict[str, str] = {}
    for name in names:
        value = getattr(settings, name.lower())
        if value is not None:
            env[name] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    return env
