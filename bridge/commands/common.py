"""What every command shares: exit codes, opening the APIs, leases, picking mappings.

Commands return an exit code; errors propagate to `bridge.cli`, which alone maps them to
exit codes (DESIGN.md): 0 done; 1 finished but some records were dead-lettered; 2 bad
configuration or input, nothing changed; 3 fatal runtime error, state consistent.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from bridge import wiring
from bridge.errors import ConfigError
from bridge.mapping.model import Mapping
from bridge.mapping.order import sync_order
from bridge.pipeline.services import Services
from bridge.settings import Settings
from bridge.store import leases as store_leases
from bridge.store import migrate as store_migrate

EXIT_OK, EXIT_DEAD_LETTERS, EXIT_CONFIG, EXIT_FATAL = 0, 1, 2, 3


@asynccontextmanager
async def open_apis(settings: Settings) -> AsyncIterator[Services]:
    """Both API clients (the pool holds the Outreach OAuth token store)."""
    wiring.check_api_settings(settings)
    async with wiring.open_pool(settings) as pool:
        await require_migrated(settings, pool)
        async with wiring.open_services(settings, pool) as services:
            yield services


@asynccontextmanager
async def leased(
    settings: Settings, kind: str, names: list[str], *, enabled: bool = True
) -> AsyncIterator[tuple[Services, Callable[[str, Awaitable[Any]], Awaitable[Any]]]]:
    """Both APIs, and the mappings' leases held as a backfill holds them (one writer each)."""
    async with open_apis(settings) as services, store_leases.hold_all(
        services.pool, store_leases.holder_id(kind), names, settings.bridge_lease_ttl_seconds,
        enabled=enabled,
    ) as held:
        yield services, held


def confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise ConfigError(f"{question}; there is no terminal to confirm on, pass --yes")
    return input(f"{question}. Continue? [y/N] ").strip().lower() in ("y", "yes")


async def require_migrated(settings: Settings, pool: Any) -> None:
    """Every command that needs the schema calls this first (exit 2 until `bridge migrate`).

    The embedded database follows the same rule as any other; `settings` stays in the
    signature for the callers that pass it.
    """
    await store_migrate.require_current(pool)


def select(mappings: dict[str, Mapping], wanted: list[str]) -> list[str]:
    unknown = sorted(set(wanted) - set(mappings))
    if unknown:
        raise ConfigError(
            f"unknown mapping(s): {', '.join(unknown)}; known: {', '.join(sorted(mappings))}"
        )
    order = sync_order(mappings)
    return [n for n in order if n in wanted] if wanted else order
