"""Settings: the environment table of DESIGN.md, read once by the CLI, worker and demo.

Only the commands (`cli.py`, `commands/`, `demo.py`) hold `Settings`, and they hand it to
`wiring.py`, which builds every client and options object; everything below gets those small
typed objects and never reads the environment (tests/test_layout.py checks both). Secrets are `SecretStr`, so a settings object printed or logged
by accident shows `**********`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bridge import settings_checks as checks
from bridge.errors import ConfigError


class Settings(BaseSettings):
    """Every knob bridge reads from the environment (and `.env`)."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    database_url: SecretStr | None = None
    bridge_data_dir: Path = Path(".bridge")
    bridge_mappings: Path = Path("mappings")
    bridge_secret_key: SecretStr | None = None

    outreach_api_url: str = "https://api.outreach.io"
    outreach_access_token: SecretStr | None = None
    outreach_client_id: str | None = None
    outreach_client_secret: SecretStr | None = None
    outreach_refresh_token: SecretStr | None = None

    zendesk_url: str | None = None
    zendesk_subdomain: str | None = None
    zendesk_client_id: str | None = None
    zendesk_client_secret: SecretStr | None = None
    zendesk_oauth_token: SecretStr | None = None
    zendesk_email: str | None = None
    zendesk_api_token: SecretStr | None = None
    # Requests per minute that every bridge process together may send to Zendesk (DESIGN.md).
    zendesk_rate_limit: int = Field(default=700, ge=10)
    # The length of Zendesk's rate window; only tests shorten it, to see a budget bind in seconds.
    zendesk_rate_window_seconds: float = Field(default=60.0, gt=0)
    # Requests per hour that every bridge process together may send to Outreach (per user).
    outreach_rate_limit: int = Field(default=10_000, ge=10)

    log_format: str | None = None  # json | console; default: console on a tty
    log_level: str = "INFO"
    port: int = 8080
    outreach_webhook_secret: SecretStr | None = None  # unset: POST /webhooks/outreach is a 404
    bridge_public_url: str | None = None  # the worker's public base URL, for `webhooks ensure`
    pgsslmode: str | None = None  # libpq's TLS mode (Heroku: require); asyncpg reads it as well
    user: str | None = None  # the login name ($USER): who ran a command, in the run history

    # Tuning knobs.
    bridge_page_size: int = Field(default=1000, ge=1, le=1000)
    bridge_batch_size: int = Field(default=100, ge=1, le=100)
    bridge_job_concurrency: int = Field(default=20, ge=1, le=25)
    bridge_queue_pages: int = Field(default=2, ge=1, le=16)
    bridge_pages_in_flight: int = Field(default=3, ge=1, le=8)
    bridge_overlap_seconds: float = Field(default=60.0, ge=0)
    bridge_http_timeout: float = Field(default=30.0, gt=0)
    bridge_max_attempts: int = Field(default=6, ge=1, le=20)
    # Per request: every retry and every 429 wait ends within this many seconds of the first send.
    bridge_request_deadline_seconds: float = Field(default=600.0, gt=0)
    # Worker (issue 5): leases, shutdown, schedule jitter, backoff after failed runs.
    bridge_lease_ttl_seconds: float = Field(default=30.0, ge=1, le=3600)
    bridge_lease_wait_seconds: float = Field(default=60.0, ge=0)  # backfill waits this long for a held mapping
    bridge_stop_timeout_seconds: float = Field(default=12.0, gt=0, le=18)
    bridge_schedule_jitter_seconds: float = Field(default=5.0, ge=0)
    bridge_backoff_seconds: float = Field(default=30.0, gt=0)
    bridge_backoff_max_seconds: float = Field(default=900.0, gt=0)
    # Repair (issue 6): reconcile guard and listing, dead-letter retries by the worker.
    bridge_reconcile_max_delete_share: float = Field(default=0.10, ge=0, le=1)
    bridge_reconcile_page_size: int = Field(default=1000, ge=1, le=1000)
    bridge_reconcile_every_seconds: float = Field(default=86400.0, gt=0)
    bridge_dead_letter_max_attempts: int = Field(default=8, ge=1)
    bridge_dead_letter_backoff_seconds: float = Field(default=300.0, gt=0)
    bridge_dead_letter_backoff_max_seconds: float = Field(default=21600.0, gt=0)
    # How often the worker looks after each mapping: due dead letters, due reconcile, parked links.
    bridge_upkeep_every_seconds: float = Field(default=300.0, gt=0)
    # Days the per-record changelog (`bridge explain`) keeps a row; the upkeep prunes older ones.
    bridge_changelog_days: float = Field(default=30.0, gt=0)
    # Alerts: a JSON POST per change of a mapping's state (bridge/alerts.py). The URL of a
    # Slack incoming webhook is itself a credential, hence SecretStr.
    bridge_alert_webhook_url: SecretStr | None = None
    bridge_alert_secret: SecretStr | None = None  # HMAC-SHA256 key for X-Bridge-Signature
    bridge_alert_lag_seconds: float = Field(default=3600.0, gt=0)
    bridge_alert_check_seconds: float = Field(default=30.0, gt=0)
    bridge_alert_retry_seconds: float = Field(default=10.0, gt=0)
    bridge_alert_max_attempts: int = Field(default=10, ge=1)
    bridge_alert_timeout_seconds: float = Field(default=10.0, gt=0)
    # `bridge status --check` thresholds (its --max-dead-letters and --max-lag-seconds).
    bridge_check_max_dead_letters: int = Field(default=0, ge=0)
    bridge_check_max_lag_seconds: float = Field(default=3600.0, gt=0)
    # The people directory: export requests a minute (Zendesk: 10, 30 with High Volume) and how
    # often the worker refreshes it between runs.
    bridge_directory_exports_per_minute: float = Field(default=10.0, gt=0, le=30)
    bridge_directory_refresh_seconds: float = Field(default=300.0, gt=0)

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        if value is not None and value not in ("json", "console"):
            raise ValueError("LOG_FORMAT must be 'json' or 'console'")
        return value

    # What a newcomer gets wrong first; each message names the variable and the fix.
    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        return checks.log_level(value)

    @field_validator("zendesk_url")
    @classmethod
    def _zendesk_origin(cls, value: str | None) -> str | None:
        return None if value is None else checks.origin("ZENDESK_URL", value, "https://acme.zendesk.com")

    @field_validator("outreach_api_url")
    @classmethod
    def _outreach_origin(cls, value: str) -> str:
        return checks.origin("OUTREACH_API_URL", value, "https://api.outreach.io")

    @field_validator("zendesk_subdomain")
    @classmethod
    def _bare_subdomain(cls, value: str | None) -> str | None:
        return None if value is None else checks.subdomain(value)

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            checks.database_url(value.get_secret_value())
        return value

    def webhook_secret(self) -> bytes | None:
        """OUTREACH_WEBHOOK_SECRET as the HMAC key, or None when unset or empty (webhooks off)."""
        value = self.outreach_webhook_secret.get_secret_value() if self.outreach_webhook_secret else ""
        return value.encode() or None

    def zendesk_base_url(self) -> str:
        """ZENDESK_URL, or https://<ZENDESK_SUBDOMAIN>.zendesk.com."""
        if self.zendesk_url:
            return self.zendesk_url.rstrip("/")
        if self.zendesk_subdomain:
            return f"https://{self.zendesk_subdomain}.zendesk.com"
        raise ConfigError("Zendesk is not configured: set ZENDESK_URL or ZENDESK_SUBDOMAIN")


def load_settings() -> Settings:
    """Reads the environment, turning pydantic's errors into one ConfigError (exit 2)."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = [checks.explain(err, Settings.model_fields) for err in exc.errors()]
        raise ConfigError(
            f"{len(problems)} environment variable(s) to fix, then rerun:\n  " + "\n  ".join(problems)
        ) from exc
