"""Lookup benchmark: email-matched user lookups answered by the people directory.

For each scenario (users in the Zendesk directory × records × latency) it starts the sandbox
process (Zendesk limited to 700 requests/min, its incremental exports to
`--export-rate-limit` a minute) with that many Zendesk users of their own (no `outreach:`
external id, so only an email match finds them; 300 of them are the vehicles' drivers),
loads the directory once (timed, its export pages counted), waits a minute (so the run's
own refresh meets the steady state, not the load's spent export window), then runs `bridge backfill
vehicles` as a child process and prints: records/s and their share of the bound (700
requests/min × 100 items per bulk job = 1,167 records/s), Zendesk and Outreach requests per
1,000 records, the Zendesk user searches (0 expected), CPU µs per record of the bridge
process and its peak RSS. Figures are printed, never asserted.

    .venv/bin/python bench/lookups.py                                  # 10k and 100k users, 0 and 50 ms
    .venv/bin/python bench/lookups.py --users 10000 --records 10000 --export-rate-limit 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.harness import (  # noqa: E402
    ZENDESK_RATE_LIMIT,
    bridge,
    bridge_env,
    counters,
    create_objects,
    reset_counters,
    sandbox_process,
    scratch_database,
    server_dsn,
)

PEOPLE = 300  # distinct drivers, as in the measurement this answers
ITEMS_PER_JOB = 100
BOUND = ZENDESK_RATE_LIMIT * ITEMS_PER_JOB / 60  # records/s when every Zendesk request writes 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, action="append", help="users in the directory (10000 and 100000)")
    parser.add_argument("--records", type=int, action="append", help="vehicles to sync (10000)")
    parser.add_argument("--latency-ms", type=float, action="append")
    parser.add_argument("--export-rate-limit", type=int, default=30,
                        help="export requests a minute, sandbox and bridge alike (Zendesk: 10; 30 with High Volume)")
    args = parser.parse_args()
    server = server_dsn()
    print(f"bound: {ZENDESK_RATE_LIMIT} Zendesk requests/min × {ITEMS_PER_JOB} items = {BOUND:,.0f} records/s")
    print(f"{'users':>7} {'records':>8} {'latency':>8} {'load s':>7} {'pages':>6} {'rec/s':>7} {'× bound':>7} "
          f"{'zd/1k':>6} {'out/1k':>7} {'searches':>8} {'cpu µs/rec':>10} {'peak RSS MB':>11}")
    for latency in args.latency_ms or [0.0, 50.0]:
        for users in args.users or [10_000, 100_000]:
            for records in args.records or [10_000]:
                row = scenario(server, users, records, latency, args.export_rate_limit)
                print(f"{users:>7} {records:>8} {latency:>6.0f}ms {row['load_seconds']:>7.1f} {row['pages']:>6.0f} "
                      f"{row['rate']:>7.0f} {row['rate'] / BOUND:>7.2f} {row['zendesk_per_1k']:>6.1f} "
                      f"{row['outreach_per_1k']:>7.1f} "
                      f"{row['searches']:>8.0f} {row['cpu_us']:>10.0f} {row['rss_mb']:>11.1f}", flush=True)


def scenario(server: str, users: int, records: int, latency_ms: float, export_limit: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(
        Path(tmp) / "sandbox.json", "--vehicles", str(records), "--brands", "20", "--prospects", str(PEOPLE),
        "--zendesk-users", str(users), "--zendesk-export-rate-limit", str(export_limit),
        "--latency-ms", str(latency_ms),
    ) as info, scratch_database(server, "bridge_bench_lookups") as dsn:
        env = bridge_env(info, dsn, REPO / "mappings", BRIDGE_DIRECTORY_EXPORTS_PER_MINUTE=str(export_limit))
        bridge(["migrate"], env)
        create_objects(env)
        bridge(["backfill", "vehicle_brands"], env)
        reset_counters(info)
        started = time.monotonic()
        load_directory(env)
        load_seconds = time.monotonic() - started
        pages = _route_count(info, "incremental_users")
        time.sleep(61)  # steady state: the exports' minute window that the load spent is over
        reset_counters(info)
        started = time.monotonic()
        usage = _measured_bridge(["backfill", "vehicles"], env)
        seconds = time.monotonic() - started
        snapshot = counters(info)
        totals = snapshot["totals"]
        return {
            "load_seconds": load_seconds,
            "pages": pages,
            "rate": records / seconds,
            "zendesk_per_1k": totals.get("zendesk", 0) * 1000 / records,
            "outreach_per_1k": totals.get("outreach", 0) * 1000 / records,
            "searches": snapshot["by_route"].get("zendesk", {}).get("GET users_search", 0),
            "cpu_us": (usage.ru_utime + usage.ru_stime) * 1e6 / records,
            "rss_mb": usage.ru_maxrss / 1024,
        }


def load_directory(env: dict[str, str]) -> None:
    """The directory's first load, as a run would do it before its first page."""
    from bridge import wiring
    from bridge.mapping.load import load_mappings
    from bridge.settings import Settings

    async def load() -> None:
        settings = Settings(**{k.lower(): v for k, v in env.items() if k.isupper() and k.lower() in Settings.model_fields})
        mappings = load_mappings(settings.bridge_mappings)
        async with wiring.open_pool(settings) as pool, wiring.open_services(settings, pool) as services:
            assert services.directory is not None
            await services.directory.refresh_for([mappings["vehicles"]])

    asyncio.run(load())


def _route_count(info: dict[str, Any], route: str) -> int:
    return int(counters(info)["by_route"].get("zendesk", {}).get(f"GET {route}", 0))


def _measured_bridge(args: list[str], env: dict[str, str]) -> resource.struct_rusage:
    """Runs bridge and returns the rusage of that one process."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "bridge", *args], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit(f"bridge {' '.join(args)} failed:\n{err.read()[-3000:]}")
    return usage


if __name__ == "__main__":
    main()
