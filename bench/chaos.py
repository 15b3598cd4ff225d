"""Chaos run: a first load under an error storm on both APIs must still end exact.

It starts the seeded sandbox in its own process (vehicles with two lookups each: `brand` to
the `vehicle_brands` mapping, `driver` to a Zendesk user by email), makes BOTH APIs answer
every 5th request with a 429 (Retry-After) and every 9th with a 503, runs `bridge backfill`
as a child process on a fresh database (Outreach pages of 100, so that Outreach sees enough
requests for the pattern to bite), then prints the exit code, wall time, requests per
API, the 429s and 5xx served, and the requests that arrived inside a Retry-After window
(early requests; must be 0), and checks the end state exactly:
- every Outreach vehicle and brand is in Zendesk once, with the fields the mapping gives;
- every vehicle's brand lookup points at its brand's Zendesk record;
- every vehicle whose driver has a Zendesk user points at that user; every other driver
  link is empty in Zendesk and parked in Postgres; nothing else is parked.

    .venv/bin/python bench/chaos.py                      # 2,000 vehicles, Retry-After: 1
    .venv/bin/python bench/chaos.py --vehicles 200 --retry-after 0.2

Exits 0 when the run and the end state are as they must be, 1 otherwise.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.harness import (  # noqa: E402
    APIS,
    add_fault,
    bridge,
    bridge_env,
    clear_faults,
    counters,
    create_objects,
    drop_database,
    fresh_database,
    query,
    reset_counters,
    sandbox_process,
    server_dsn,
    state,
)

RATE_LIMIT_EVERY = 5
SERVER_ERROR_EVERY = 9
SERVER_ERROR = 503


@dataclass
class ChaosResult:
    """What one chaos run did and what it left behind."""

    exit_code: int
    seconds: float
    requests: dict[str, int]
    rate_limited: dict[str, int]  # 429s served per API
    server_errors: dict[str, int]  # 5xx served per API
    early: dict[str, int]  # requests inside a Retry-After window, per API
    early_detail: list[dict[str, Any]] = field(default_factory=list)  # what they were
    problems: list[str] = field(default_factory=list)  # end-state mismatches
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.problems and not any(self.early.values())

    def summary(self) -> str:
        lines = [
            f"exit code        {self.exit_code}",
            f"wall time        {self.seconds:.1f} s",
            *(f"{api:<16} {self.requests.get(api, 0)} requests, {self.rate_limited.get(api, 0)} × 429, "
              f"{self.server_errors.get(api, 0)} × 5xx, {self.early.get(api, 0)} early" for api in APIS),
            *(f"  early: {e['method']} {e['route']} {e['arrived_after_429']:.3f} s after a 429 on {e['after']}"
              f"{' (same connection)' if e['same_connection'] else ''}" for e in self.early_detail[:10]),
            f"end state        {'exact' if not self.problems else f'{len(self.problems)} problem(s)'}",
            *(f"  - {p}" for p in self.problems[:20]),
        ]  # fmt: skip
        if self.exit_code != 0:
            lines += ["bridge backfill's last log lines:", self.stderr_tail]
        return "\n".join(lines)


def run_chaos(
    server: str,
    *,
    vehicles: int = 2000,
    brands: int = 20,
    prospects: int = 200,
    retry_after: float = 1.0,
    page_size: int = 100,
    timeout: float = 1800.0,
    extra_env: dict[str, str] | None = None,
) -> ChaosResult:
    """One chaos run against a fresh database on `server` (dropped afterwards)."""
    name = f"bridge_chaos_{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(
        Path(tmp) / "sandbox.json", "--vehicles", str(vehicles), "--brands", str(brands),
        "--prospects", str(prospects),
    ) as info:  # fmt: skip
        dsn = fresh_database(server, name)
        try:
            env = bridge_env(info, dsn, REPO / "mappings", LOG_FORMAT="json", BRIDGE_PAGE_SIZE=str(page_size),
                             **(extra_env or {}))  # fmt: skip
            bridge(["migrate"], env)
            create_objects(env)
            reset_counters(info)
            for api in APIS:
                add_fault(info, api=api, kind="status", status=429, retry_after=retry_after, every=RATE_LIMIT_EVERY)
                add_fault(info, api=api, kind="status", status=SERVER_ERROR, every=SERVER_ERROR_EVERY)
            started = time.monotonic()
            proc = subprocess.run([sys.executable, "-m", "bridge", "backfill"], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=timeout)  # fmt: skip
            seconds = time.monotonic() - started
            clear_faults(info)
            served = counters(info)
            world = state(info, ["vehicles", "vehicle_brands", "prospect"], ["vehicle", "vehicle_brand"])
            parked = query(dsn, "SELECT mapping, source_id, field FROM parked_links")
        finally:
            drop_database(server, name)
    by_status = served["by_status"]
    return ChaosResult(
        exit_code=proc.returncode,
        seconds=seconds,
        requests={api: int(served["totals"].get(api, 0)) for api in APIS},
        rate_limited={api: int(by_status.get(api, {}).get("429", 0)) for api in APIS},
        server_errors={api: sum(n for s, n in by_status.get(api, {}).items() if s.startswith("5")) for api in APIS},
        early={api: int(served["early_requests"].get(api, 0)) for api in APIS},
        early_detail=list(served["early"]),
        problems=end_state_problems(world, parked),
        stderr_tail="\n".join(proc.stderr.splitlines()[-15:]),
    )


def expected_vehicle(resource: dict[str, Any]) -> dict[str, Any]:
    """What mappings/vehicles.yaml must produce, written out independently of bridge."""
    a = resource["attributes"]
    speed = "".join(ch for ch in str(a.get("speed") or "") if ch.isdigit())
    return {
        "name": a["vehicle_name"],
        "vehicle_name": a["vehicle_name"],
        "top_speed_mph": int(speed) if speed else None,
        "registered_on": a["registeredAt"][:10] if a.get("registeredAt") else None,
        "color": a["color"].strip().lower() if a.get("color") else None,
        "electric": a.get("electric"),
    }


def expected_brand(resource: dict[str, Any]) -> dict[str, Any]:
    a = resource["attributes"]
    return {"name": a["name"], "brand_name": a["name"], "country": (a.get("country") or "").strip() or None,
            "founded": a.get("founded")}  # fmt: skip


def _actual(record: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    values = record["custom_object_fields"]
    return {"name": record["name"], **{k: values.get(k) for k in keys if k != "name"}}


def _related_id(resource: dict[str, Any], name: str) -> int | None:
    data = (resource.get("relationships", {}).get(name) or {}).get("data")
    return None if data is None else int(data["id"])


def end_state_problems(world: dict[str, Any], parked: list[dict[str, Any]]) -> list[str]:
    """Every way Zendesk and the parked links differ from what Outreach says they must be."""
    problems: list[str] = []
    brands_z = _by_external_id(world["zendesk"]["vehicle_brand"], problems)
    vehicles_z = _by_external_id(world["zendesk"]["vehicle"], problems)
    for resource in world["outreach"]["vehicle_brands"]:
        ext = f"outreach:vehicle_brands:{resource['id']}"
        want = expected_brand(resource)
        if (got := brands_z.pop(ext, None)) is None:
            problems.append(f"brand {ext} is missing from Zendesk")
        elif (have := _actual(got, list(want))) != want:
            problems.append(f"brand {ext}: Zendesk has {have}, Outreach says {want}")
    problems += [f"brand {ext} is in Zendesk but not in Outreach" for ext in brands_z]
    brand_ids = {r["external_id"]: r["id"] for r in world["zendesk"]["vehicle_brand"]}
    emails = {p["id"]: (p["attributes"].get("emails") or [None])[0] for p in world["outreach"]["prospect"]}
    users = {u["email"]: str(u["id"]) for u in world["users"]}
    should_park: set[tuple[str, str]] = set()
    for resource in world["outreach"]["vehicles"]:
        ext = f"outreach:vehicles:{resource['id']}"
        want = expected_vehicle(resource)
        brand = _related_id(resource, "brand")
        want["brand"] = None if brand is None else brand_ids.get(f"outreach:vehicle_brands:{brand}")
        if brand is not None and want["brand"] is None:
            problems.append(f"vehicle {ext}: its brand {brand} has no Zendesk record")
        driver = _related_id(resource, "main_driver")
        email = emails.get(driver) if driver is not None else None
        want["driver"] = users.get(email) if email else None
        if driver is not None and want["driver"] is None:
            should_park.add((str(resource["id"]), "driver"))
        if (got := vehicles_z.pop(ext, None)) is None:
            problems.append(f"vehicle {ext} is missing from Zendesk")
        elif (have := _actual(got, list(want))) != want:
            diff = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
            problems.append(f"vehicle {ext}: (Zendesk, expected) differ in {diff}")
    problems += [f"vehicle {ext} is in Zendesk but not in Outreach" for ext in vehicles_z]
    parked_now = {(r["source_id"], r["field"]) for r in parked if r["mapping"] == "vehicles"}
    problems += [f"vehicle {sid}: link {f} should be parked but is not" for sid, f in sorted(should_park - parked_now)]
    problems += [f"vehicle {sid}: link {f} is parked but should not be" for sid, f in sorted(parked_now - should_park)]
    problems += [f"{r['mapping']} {r['source_id']}: unexpected parked link {r['field']}" for r in parked
                 if r["mapping"] != "vehicles"]  # fmt: skip
    return problems


def _by_external_id(records: list[dict[str, Any]], problems: list[str]) -> dict[str, dict[str, Any]]:
    counts = Counter(r["external_id"] for r in records)
    problems += [f"{ext} is in Zendesk {n} times" for ext, n in counts.items() if n > 1]
    return {r["external_id"]: r for r in records}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=2000)
    parser.add_argument("--brands", type=int, default=20)
    parser.add_argument("--prospects", type=int, default=200)
    parser.add_argument("--retry-after", type=float, default=1.0, help="seconds the injected 429s ask for")
    parser.add_argument("--page-size", type=int, default=100, help="Outreach page size (small: more requests to fault)")
    args = parser.parse_args()
    result = run_chaos(server_dsn(), vehicles=args.vehicles, brands=args.brands, prospects=args.prospects,
                       retry_after=args.retry_after, page_size=args.page_size)  # fmt: skip
    print(result.summary(), flush=True)
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
