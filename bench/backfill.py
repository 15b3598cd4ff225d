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
"""

from __future__ import annotations

import argparse
import json
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
    reset_counters,
    sandbox_process,
    scratch_database,
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
    args = parser.parse_args()
    server = server_dsn()
    variants = {"with": [True], "without": [False], "both": [False, True]}[args.lookups]
    print(f"bound: {ZENDESK_RATE_LIMIT} Zendesk requests/min × {ITEMS_PER_JOB} items = {BOUND:,.0f} records/s")
    print(f"{'lookups':>7} {'records':>8} {'latency':>8} {'rec/s':>8} {'run rec/s':>9} {'× bound':>7} {'out/1k':>7} "
          f"{'zd/1k':>7} {'zd/min':>7} {'cpu µs/rec':>10} {'peak RSS MB':>11} {'wall s':>7} {'sandbox CPU':>11}")
    for latency in args.latency_ms or [0.0, 50.0]:
        for records in args.records or [10_000, 100_000]:
            for lookups in variants:
                row = scenario(server, records, latency, args.mapping, lookups)
                print(f"{'2' if lookups else '0':>7} {records:>8} {latency:>6.0f}ms {row['rate']:>8.0f} {row['run_rate']:>9.0f} "
                      f"{row['run_rate'] / BOUND:>7.2f} {row['outreach_per_1k']:>7.1f} "
                      f"{row['zendesk_per_1k']:>7.1f} {row['zendesk_per_min']:>7.0f} {row['cpu_us']:>10.0f} {row['rss_mb']:>11.1f} "
                      f"{row['seconds']:>7.1f} {row['sandbox_cpu_pct']:>10.0f}%", flush=True)


def scenario(server_dsn: str, records: int, latency_ms: float, mapping: str, lookups: bool = True) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(
        Path(tmp) / "sandbox.json", "--vehicles", str(records), "--brands", "20", "--prospects", "50",
        "--latency-ms", str(latency_ms),
    ) as info, scratch_database(server_dsn, "bridge_bench") as dsn:
        before = cpu_seconds(info["pid"])
        mappings = REPO / "mappings" if lookups else attribute_only_mappings(Path(tmp))
        row = _run_backfill(info, dsn, mapping, records, mappings)
        row["sandbox_cpu_pct"] = 100 * (cpu_seconds(info["pid"]) - before) / row["seconds"]
        return row


def _run_backfill(info: dict[str, Any], dsn: str, mapping: str, records: int, mappings: Path) -> dict[str, float]:
    env = bridge_env(info, dsn, mappings)
    bridge(["migrate"], env)
    create_objects(env)
    bridge(["backfill", "vehicle_brands"], env)
    reset_counters(info)
    run = run_measured([sys.executable, "-m", "bridge", "backfill", mapping],
                       {**env, "LOG_LEVEL": "INFO", "LOG_FORMAT": "json"})  # fmt: skip
    totals = counters(info)["totals"]
    return {
        "rate": records / run.seconds,
        "run_rate": records / _run_seconds(run.stderr, mapping),
        "outreach_per_1k": totals["outreach"] * 1000 / records,
        "zendesk_per_1k": totals["zendesk"] * 1000 / records,
        "zendesk_per_min": totals["zendesk"] * 60 / run.seconds,
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
