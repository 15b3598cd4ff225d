"""Backfill benchmark: bridge against the sandbox, each in its own process.

For each scenario (records × injected latency) it starts the sandbox process (its Zendesk
limited to 700 requests/min, Enterprise's real bound), seeds it, runs `bridge backfill` as a
child process on a fresh database and prints: records per second (whole process, and the
run alone) and their share of the bound (700 requests/min × 100 items per bulk job = 1,167
records/s), Outreach and Zendesk requests per 1,000 records, CPU µs per record of the bridge
process, and its peak RSS. Figures are printed, never asserted. `zd/min` is the Zendesk
request rate reached: the sandbox counts requests per wall-clock minute, as Zendesk does,
so a run shorter than a few minutes may straddle two fresh windows and pass the bound;
only long runs (100,000 records at 50 ms, 1,000,000) show the sustained rate.

    .venv/bin/python bench/backfill.py                       # 10k and 100k, at 0 and 50 ms
    .venv/bin/python bench/backfill.py --records 10000 --latency-ms 0
    .venv/bin/python bench/backfill.py --records 1000000 --latency-ms 0   # ≥ 15 minutes
    .venv/bin/python bench/backfill.py --lookups both    # attribute-only beside two lookups

`--lookups without` (the default) runs the example mappings with their relationships
removed (attributes only); `with` runs them as they are, where every vehicle has two lookups
(driver: zen:user by email, brand: mapping:vehicle_brands); `both` prints one row of each.

`--zendesk-limit 0` lifts the Zendesk bound (sandbox and bridge both: 1,000,000 requests/min),
which leaves bridge's own and the database's cost to set the pace. `--rerun` also times a
second `backfill --full` of the same records, every one unchanged (`rerun` rows: nothing is
written to Zendesk, every record is read, compared and logged as skipped). Each row ends with
the size of the `id_map` and `record_changelog` tables (pg_total_relation_size) per 1,000
records after that run.

    .venv/bin/python bench/backfill.py --records 10000 --latency-ms 0 --zendesk-limit 0 --rerun
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
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
    drop_database,
    fresh_database,
    query,
    reset_counters,
    sandbox_process,
    server_dsn,
)
from bench.measure import attribute_only_mappings, cpu_seconds, run_measured  # noqa: E402

ITEMS_PER_JOB = 100
BOUND = ZENDESK_RATE_LIMIT * ITEMS_PER_JOB / 60  # records/s when every Zendesk request writes 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, action="append")
    parser.add_argument("--latency-ms", type=float, action="append")
    parser.add_argument("--mapping", default="vehicles")
    parser.add_argument("--lookups", choices=("with", "without", "both"), default="without")
    parser.add_argument("--zendesk-limit", type=int, default=ZENDESK_RATE_LIMIT,
                        help="Zendesk requests/min for the sandbox and bridge; 0: no bound")
    parser.add_argument("--rerun", action="store_true", help="also time a --full rerun, all records unchanged")
    args = parser.parse_args()
    server = server_dsn()
    limit = args.zendesk_limit or UNBOUNDED
    bound = limit * ITEMS_PER_JOB / 60
    variants = {"with": [True], "without": [False], "both": [False, True]}[args.lookups]
    print(f"bound: {limit} Zendesk requests/min × {ITEMS_PER_JOB} items = {bound:,.0f} records/s")
    print(f"{'run':>5} {'lookups':>7} {'records':>8} {'latency':>8} {'rec/s':>8} {'run rec/s':>9} {'× bound':>7} "
          f"{'out/1k':>7} {'zd/1k':>7} {'zd/min':>7} {'cpu µs/rec':>10} {'peak RSS MB':>11} {'wall s':>7} "
          f"{'sandbox CPU':>11} {'id_map KB/1k':>12} {'changelog KB/1k':>15}")
    for latency in args.latency_ms or [0.0, 50.0]:
        for records in args.records or [10_000, 100_000]:
            for lookups in variants:
                for kind, row in scenario(server, records, latency, args.mapping, lookups, limit, args.rerun):
                    print(f"{kind:>5} {'2' if lookups else '0':>7} {records:>8} {latency:>6.0f}ms {row['rate']:>8.0f} "
                          f"{row['run_rate']:>9.0f} {row['run_rate'] / bound:>7.2f} {row['outreach_per_1k']:>7.1f} "
                          f"{row['zendesk_per_1k']:>7.1f} {row['zendesk_per_min']:>7.0f} {row['cpu_us']:>10.0f} "
                          f"{row['rss_mb']:>11.1f} {row['seconds']:>7.1f} {row['sandbox_cpu_pct']:>10.0f}% "
                          f"{row['id_map_kb']:>12.1f} {row['changelog_kb']:>15.1f}", flush=True)


UNBOUNDED = 1_000_000  # requests/min: `--zendesk-limit 0`


def scenario(
    server_dsn: str, records: int, latency_ms: float, mapping: str, lookups: bool = True,
    limit: int = ZENDESK_RATE_LIMIT, rerun: bool = False,
) -> list[tuple[str, dict[str, float]]]:  # fmt: skip
    """("first", row) for the backfill, then ("rerun", row) with `rerun`."""
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(
        Path(tmp) / "sandbox.json", "--vehicles", str(records), "--brands", "20", "--prospects", "50",
        "--latency-ms", str(latency_ms), rate_limit=limit,
    ) as info:
        name = f"bridge_bench_{os.getpid()}"  # several benchmarks may share a server
        dsn = fresh_database(server_dsn, name)
        mappings = REPO / "mappings" if lookups else attribute_only_mappings(Path(tmp))
        env = bridge_env(info, dsn, mappings, ZENDESK_RATE_LIMIT=str(limit))
        bridge(["migrate"], env)
        create_objects(env)
        bridge(["backfill", "vehicle_brands"], env)
        rows = []
        for kind, extra in [("first", []), *([("rerun", ["--full"])] if rerun else [])]:
            before = cpu_seconds(info["pid"])
            row = _run_backfill(info, env, mapping, records, extra)
            row["sandbox_cpu_pct"] = 100 * (cpu_seconds(info["pid"]) - before) / row["seconds"]
            row.update(_table_sizes(dsn, records))
            rows.append((kind, row))
        drop_database(server_dsn, name)
        return rows


def _table_sizes(dsn: str, records: int) -> dict[str, float]:
    """KB per 1,000 records of id_map and record_changelog (0 where a table does not exist)."""
    sizes = query(dsn, "SELECT coalesce(pg_total_relation_size(to_regclass('id_map')), 0) AS id_map, "
                       "coalesce(pg_total_relation_size(to_regclass('record_changelog')), 0) AS changelog")  # fmt: skip
    return {"id_map_kb": sizes[0]["id_map"] / records, "changelog_kb": sizes[0]["changelog"] / records}


def _run_backfill(info: dict[str, Any], env: dict[str, str], mapping: str, records: int, extra: list[str]) -> dict[str, float]:
    reset_counters(info)
    run = run_measured([sys.executable, "-m", "bridge", "backfill", mapping, *extra],
                       {**env, "LOG_LEVEL": "INFO", "LOG_FORMAT": "json"})  # fmt: skip
    totals = counters(info)["totals"]
    return {
        "rate": records / run.seconds,
        "run_rate": records / _run_seconds(run.stderr, mapping),
        "outreach_per_1k": totals.get("outreach", 0) * 1000 / records,
        "zendesk_per_1k": totals.get("zendesk", 0) * 1000 / records,
        "zendesk_per_min": totals.get("zendesk", 0) * 60 / run.seconds,
        "cpu_us": run.cpu_us_per(records),
        "rss_mb": run.peak_rss_mb,
        "seconds": run.seconds,
    }


def _run_seconds(stderr: str, mapping: str) -> float:
    """The run's own duration from its `run_finished` log line (no process start-up)."""
    for line in stderr.splitlines():
        if '"run_finished"' in line:
            event = json.loads(line)
            if event.get("mapping") == mapping:
                return float(event["seconds"])
    raise SystemExit("no run_finished line in the backfill's log")


if __name__ == "__main__":
    main()
