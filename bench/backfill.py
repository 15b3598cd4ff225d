"""Backfill benchmark: bridge against the sandbox, each in its own process.

For each scenario (records × injected latency) it starts the sandbox process, seeds it,
runs `bridge backfill` as a child process on a fresh database and prints:
records per second, Outreach and Zendesk requests per 1,000 records, CPU µs per record of
the bridge process, and its peak RSS. Figures are printed, never asserted.

    .venv/bin/python bench/backfill.py                       # 10k and 100k, at 0 and 50 ms
    .venv/bin/python bench/backfill.py --records 10000 --latency-ms 0
    .venv/bin/python bench/backfill.py --lookups both    # attribute-only beside two lookups

`--lookups with` (the default) runs the example mappings, where every vehicle has two lookups
(driver: zen:user by email, brand: mapping:vehicle_brands); `without` runs the same mapping
with its relationships removed; `both` prints one row of each per scenario.
"""

from __future__ import annotations

import argparse
import json
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
    bridge,
    bridge_env,
    counters,
    create_objects,
    fresh_database,
    reset_counters,
    sandbox_process,
    server_dsn,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, action="append")
    parser.add_argument("--latency-ms", type=float, action="append")
    parser.add_argument("--mapping", default="vehicles")
    parser.add_argument("--lookups", choices=("with", "without", "both"), default="with")
    args = parser.parse_args()
    server = server_dsn()
    variants = {"with": [True], "without": [False], "both": [False, True]}[args.lookups]
    print(f"{'lookups':>7} {'records':>8} {'latency':>8} {'rec/s':>8} {'run rec/s':>9} {'out/1k':>7} {'zd/1k':>7} "
          f"{'cpu µs/rec':>10} {'peak RSS MB':>11} {'wall s':>7} {'sandbox CPU':>11}")
    for latency in args.latency_ms or [0.0, 50.0]:
        for records in args.records or [10_000, 100_000]:
            for lookups in variants:
                row = scenario(server, records, latency, args.mapping, lookups)
                print(f"{'2' if lookups else '0':>7} {records:>8} {latency:>6.0f}ms {row['rate']:>8.0f} {row['run_rate']:>9.0f} {row['outreach_per_1k']:>7.1f} "
                      f"{row['zendesk_per_1k']:>7.1f} {row['cpu_us']:>10.0f} {row['rss_mb']:>11.1f} "
                      f"{row['seconds']:>7.1f} {row['sandbox_cpu_pct']:>10.0f}%", flush=True)


def scenario(server_dsn: str, records: int, latency_ms: float, mapping: str, lookups: bool = True) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(
        Path(tmp) / "sandbox.json", "--vehicles", str(records), "--brands", "20", "--prospects", "50",
        "--latency-ms", str(latency_ms),
    ) as info:
        dsn = fresh_database(server_dsn, "bridge_bench")
        before = _cpu_seconds(info["pid"])
        row = _run_backfill(info, dsn, mapping, records, _mappings_dir(Path(tmp), lookups))
        row["sandbox_cpu_pct"] = 100 * (_cpu_seconds(info["pid"]) - before) / row["seconds"]
        return row


def _mappings_dir(tmp: Path, lookups: bool) -> Path:
    """The example mappings, or a copy whose mappings have no relationships (attribute-only)."""
    if lookups:
        return REPO / "mappings"
    import yaml

    folder = tmp / "mappings"
    folder.mkdir()
    for path in (REPO / "mappings").glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        doc.pop("relationships", None)
        (folder / path.name).write_text(yaml.safe_dump(doc))
    return folder


def _run_backfill(info: dict[str, Any], dsn: str, mapping: str, records: int, mappings: Path) -> dict[str, float]:
    env = bridge_env(info, dsn, mappings)
    bridge(["migrate"], env)
    create_objects(env)
    bridge(["backfill", "vehicle_brands"], env)
    reset_counters(info)
    started = time.monotonic()
    usage, stderr = _measured_bridge(["backfill", mapping], env)
    seconds = time.monotonic() - started
    totals = counters(info)["totals"]
    return {
        "rate": records / seconds,
        "run_rate": records / _run_seconds(stderr, mapping),
        "outreach_per_1k": totals["outreach"] * 1000 / records,
        "zendesk_per_1k": totals["zendesk"] * 1000 / records,
        "cpu_us": (usage.ru_utime + usage.ru_stime) * 1e6 / records,
        "rss_mb": usage.ru_maxrss / 1024,
        "seconds": seconds,
    }


def _measured_bridge(args: list[str], env: dict[str, str]) -> tuple[resource.struct_rusage, str]:
    """Runs bridge and returns the rusage of that one process (not of every child so far)."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "bridge", *args], cwd=REPO,
                                env={**env, "LOG_LEVEL": "INFO", "LOG_FORMAT": "json"},
                                stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read()
    if proc.returncode != 0:
        raise SystemExit(f"bridge {' '.join(args)} exited {proc.returncode}:\n{text[-3000:]}")
    return usage, text


def _run_seconds(stderr: str, mapping: str) -> float:
    """The run's own duration from its `run_finished` log line (no process start-up)."""
    for line in stderr.splitlines():
        if '"run_finished"' in line:
            event = json.loads(line)
            if event.get("mapping") == mapping:
                return float(event["seconds"])
    raise SystemExit("no run_finished line in the backfill's log")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
