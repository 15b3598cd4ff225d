"""Deterministic sample data for the sandbox: the seed page's vehicles, brands and prospects.

Used by `bridge demo`, the integration tests and the benchmarks (100,000 vehicles must seed
in a few seconds, so records go in through the compact state API with precomputed
timestamps). Invariants: the same arguments give the same records and relationships;
`updatedAt` values come in batches of 7 equal stamps (to exercise tie-breaking by id), spread
over at least six hours and ending a minute before the sandbox clock's now, so later writes
sort after them and an incremental sync's overlap window does not cover the whole history;
most prospects have a Zendesk user with the same email and external id `outreach:prospect:<id>`.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from bridge.sandbox.outreach_query import to_micros

if TYPE_CHECKING:
    from bridge.sandbox.server import Sandbox

TIE_BATCH = 7
STEP_US = 2_000_000  # batches at least 1-2 s apart: a realistic history, not one instant
HISTORY_US = 6 * 3600 * 1_000_000  # and spread over at least six hours
BRANDS = [
    ("DMC", "United Kingdom", 1975), ("Ford", "United States", 1903), ("Tesla", "United States", 2003),
    ("Volvo", "Sweden", 1927), ("Fiat", "Italy", 1899), ("Toyota", "Japan", 1937), ("Renault", "France", 1899),
    ("Skoda", "Czechia", 1895), ("Kia", "South Korea", 1944), ("Mahindra", "India", 1945),
    ("BYD", "China", 2003), ("Porsche", "Germany", 1931),
]  # fmt: skip
MODELS = ["DeLorean", "Model T", "Roadster", "Amazon", "Panda", "Corolla", "Clio", "Octavia", "Niro", "Thar", "Seal", "911"]
COLORS = ["red", "blue", "silver", "black", "white", "green"]
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Frances", "Dennis"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Thompson", "Allen", "Ritchie"]
VEHICLE_ATTRIBUTES = {"vehicle_name": "string", "speed": "string", "registeredAt": "date-time", "color": "string", "electric": "boolean"}


@dataclass(frozen=True, slots=True)
class SeedInfo:
    """Credentials and counts of a seeded sandbox (written to `--info-file`)."""

    outreach_client_id: str
    outreach_client_secret: str
    outreach_refresh_token: str
    outreach_token: str
    zendesk_client_id: str
    zendesk_client_secret: str
    zendesk_token: str
    zendesk_email: str
    zendesk_api_token: str
    vehicles: int
    brands: int
    prospects: int
    zendesk_users: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def seed_demo(sandbox: Sandbox, *, vehicles: int = 200, brands: int = 12, prospects: int = 50, rng_seed: int = 7) -> SeedInfo:
    """Fill both simulators with sample data and credentials; deterministic for `rng_seed`."""
    rng = random.Random(rng_seed)
    out = sandbox.outreach
    _declare_types(sandbox)
    stamps = _Stamps(to_micros(out.clock()), vehicles + brands + prospects + 10, rng)
    account_ids = [out.put("account", {"name": f"Account {i}", "domain": f"account{i}.example.com"}, at=stamps.next()) for i in range(max(1, prospects // 10))]
    prospect_ids = [_put_prospect(sandbox, i, rng.choice(account_ids), stamps.next()) for i in range(prospects)]
    brand_ids = [_put_brand(sandbox, i, stamps.next()) for i in range(brands)]
    for i in range(vehicles):
        _put_vehicle(sandbox, i, rng, prospect_ids, brand_ids, stamps.next())
    users = sum(1 for i, pid in enumerate(prospect_ids) if i % 5 != 4 and _add_user(sandbox, pid))
    return _credentials(sandbox, vehicles, brands, prospects, users)


def _declare_types(sandbox: Sandbox) -> None:
    out = sandbox.outreach
    out.add_type("vehicle_brands", custom_object=True, display_field="name",
                 attributes={"name": "string", "country": "string", "founded": "integer"}, relationships={})  # fmt: skip
    out.add_type("vehicles", custom_object=True, display_field="vehicle_name", attributes=VEHICLE_ATTRIBUTES,
                 relationships={"main_driver": "prospect", "brand": "vehicle_brands"})  # fmt: skip


class _Stamps:
    """Timestamps in the past, ascending, each repeated TIE_BATCH times, with µs digits."""

    def __init__(self, now: int, count: int, rng: random.Random) -> None:
        batches = count // TIE_BATCH + 2
        self._step = max(STEP_US, HISTORY_US // batches)
        self._current = now - batches * self._step - 60_000_000
        self._used = TIE_BATCH
        self._rng = rng

    def next(self) -> int:
        if self._used == TIE_BATCH:
            self._current += self._rng.randrange(self._step // 2, self._step)
            self._used = 0
        self._used += 1
        return self._current


def _put_prospect(sandbox: Sandbox, i: int, account_id: int, at: int) -> int:
    first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
    email = f"{first}.{last}.{i}@example.com".lower()
    attrs = {"firstName": first, "lastName": last, "emails": [email], "title": "Driver"}
    return sandbox.outreach.put("prospect", attrs, {"account": account_id}, at=at)


def _put_brand(sandbox: Sandbox, i: int, at: int) -> int:
    name, country, founded = BRANDS[i % len(BRANDS)]
    if i >= len(BRANDS):
        name = f"{name} {i // len(BRANDS) + 1}"
    return sandbox.outreach.put("vehicle_brands", {"name": name, "country": country, "founded": founded}, at=at)


def _put_vehicle(sandbox: Sandbox, i: int, rng: random.Random, prospect_ids: list[int], brand_ids: list[int], at: int) -> int:
    attrs = {
        "vehicle_name": f"{MODELS[i % len(MODELS)]} {i}",
        "speed": f"{rng.randrange(40, 200)}mph",
        "registeredAt": at - rng.randrange(86_400, 3_650 * 86_400) * 1_000_000,
        "color": rng.choice(COLORS),
        "electric": rng.random() < 0.3,
    }
    driver = rng.choice(prospect_ids) if prospect_ids and rng.random() < 0.9 else None
    brand = rng.choice(brand_ids) if brand_ids else None
    return sandbox.outreach.put("vehicles", attrs, {"main_driver": driver, "brand": brand}, at=at)


def _add_user(sandbox: Sandbox, prospect_id: int) -> bool:
    record = sandbox.outreach.get("prospect", prospect_id)
    assert record is not None
    attrs = record["attributes"]
    sandbox.zendesk.add_user(attrs["name"], attrs["emails"][0], external_id=f"outreach:prospect:{prospect_id}")
    return True


def people_of_their_own(sandbox: Sandbox, users: int) -> None:
    """Replaces the seeded users by `users` made in Zendesk itself (no `outreach:` external id):
    one per prospect first, its email upper-cased (Zendesk keeps the case it was given), then
    strangers. Email lookups must find them by a case-insensitive match."""
    sandbox.zendesk.users.clear()
    prospects = sandbox.outreach.ids("prospect")
    for i in range(users):
        if i < len(prospects):
            attrs = sandbox.outreach.get("prospect", prospects[i])["attributes"]  # type: ignore[index]
            sandbox.zendesk.add_user(attrs["name"], attrs["emails"][0].upper())
        else:
            sandbox.zendesk.add_user(f"Stranger {i}", f"stranger.{i}@elsewhere.example.com")


def _credentials(sandbox: Sandbox, vehicles: int, brands: int, prospects: int, users: int) -> SeedInfo:
    o_id, o_secret = "sandbox-outreach-client", secrets.token_urlsafe(24)
    z_id, z_secret = "sandbox-zendesk-client", secrets.token_urlsafe(24)
    refresh = sandbox.outreach.add_oauth_client(o_id, o_secret)
    sandbox.zendesk.add_oauth_client(z_id, z_secret)
    email = "admin@sandbox.example.com"
    return SeedInfo(
        outreach_client_id=o_id, outreach_client_secret=o_secret, outreach_refresh_token=refresh,
        outreach_token=sandbox.outreach.issue_token(), zendesk_client_id=z_id, zendesk_client_secret=z_secret,
        zendesk_token=sandbox.zendesk.issue_token(), zendesk_email=email, zendesk_api_token=sandbox.zendesk.add_api_token(email),
        vehicles=vehicles, brands=brands, prospects=prospects, zendesk_users=users,
    )  # fmt: skip
