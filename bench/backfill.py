"""Backfill benchmark: bridge against the sandbox, each in its own process.

For each scenario (records × injected latency) it starts the sandbox process, seeds it,
runs `bridge backfill` as a child process on a fresh database and prints:
records per second, Outreach and Zendesk requests per 1,000 records, CPU µs per record of
the bridge process, and its peak RSS. Figures are printed, never asserted.

    .venv/bin/python bench/backfill.py                       # 10k and 100k, at 0 and 50 ms
    .venv/bin/python bench/backfill.py --records 10000 --latency-ms 0
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg  # noqa: F401  (fail early if the venv is missing)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bridge import embedded_pg  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, action="append")
    parser.add_argument("--latency-ms", type=float, action="append")
    parser.add_argument("--mapping", default="vehicles")
    args = parser.parse_args()
    server_dsn = os.environ.get("DATABASE_URL") or embedded_pg.start_embedded(REPO / ".bridge")
    print(f"{'records':>8} {'latency':>8} {'rec/s':>8} {'out/1k':>7} {'zd/1k':>7} "
          f"{'cpu µs/rec':>10} {'peak RSS MB':>11} {'wall s':>7}")
    for latency in args.latency_ms or [0.0, 50.0]:
        for records in args.records or [10_000, 100_000]:
            row = scenario(server_dsn, records, latency, args.mapping)
            print(f"{records:>8} {latency:>6.0f}ms {row['rate']:>8.0f} {row['outreach_per_1k']:>7.1f} "
                  f"{row['zendesk_per_1k']:>7.1f} {row['cpu_us']:>10.0f} {row['rss_mb']:>11.1f} "
                  f"{row['seconds']:>7.1f}", flush=True)


def scenario(server_dsn: str, records: int, latency_ms: float, mapping: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        info_file = Path(tmp) / "sandbox.json"
        sandbox = subprocess.Popen(
            [sys.executable, "-m", "bridge.sandbox", "--vehicles", str(records), "--brands", "20",
             "--prospects", "50", "--latency-ms", str(latency_ms), "--info-file", str(info_file)],
            cwd=REPO, stdout=subprocess.DEVNULL,
        )
        try:
            info = _wait_for_info(info_file, sandbox)
            dsn = _fresh_database(server_dsn, "bridge_bench")
            return _run_backfill(info, dsn, mapping, records)
        finally:
            sandbox.send_signal(signal.SIGTERM)
            sandbox.wait(timeout=30)


def _run_backfill(info: dict[str, Any], dsn: str, mapping: str, records: int) -> dict[str, float]:
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "OUTREACH_API_URL": info["outreach_url"],
        "OUTREACH_ACCESS_TOKEN": info["outreach_token"],
        "ZENDESK_URL": info["zendesk_url"],
        "ZENDESK_CLIENT_ID": info["zendesk_client_id"],
        "ZENDESK_CLIENT_SECRET": info["zendesk_client_secret"],
        "BRIDGE_MAPPINGS": str(REPO / "mappings"),
        "LOG_LEVEL": "WARNING",
    }
    _bridge(["migrate"], env)
    _bridge(["backfill", "vehicle_brands"], env)
    _reset_counters(info)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    _bridge(["backfill", mapping], env)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    counters = _counters(info)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "rate": records / seconds,
        "outreach_per_1k": counters["outreach"] * 1000 / records,
        "zendesk_per_1k": counters["zendesk"] * 1000 / records,
        "cpu_us": cpu * 1e6 / records,
        "rss_mb": after.ru_maxrss / 1024,  # max over children so far: bridge is the largest
        "seconds": seconds,
    }


def _bridge(args: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "bridge", *args], cwd=REPO, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bridge {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")


def _wait_for_info(path: Path, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"sandbox exited with {proc.returncode}")
        if path.exists() and path.stat().st_size:
            try:
                return dict(json.loads(path.read_text()))
            except json.JSONDecodeError:
                pass
        time.sleep(0.05)
    raise SystemExit("sandbox did not start within 120 s")


def _counters(info: dict[str, Any]) -> dict[str, int]:
    totals = {}
    for api in ("outreach", "zendesk"):
        with urllib.request.urlopen(f"{info[api + '_url']}/_sandbox/counters") as resp:
            snapshot = json.loads(resp.read())
        totals[api] = int(snapshot["totals"][api])
    return totals


def _reset_counters(info: dict[str, Any]) -> None:
    for api in ("outreach", "zendesk"):
        req = urllib.request.Request(f"{info[api + '_url']}/_sandbox/counters/reset", method="POST")
        urllib.request.urlopen(req).close()


def _fresh_database(server_dsn: str, name: str) -> str:
    import asyncio

    from bridge.demo import _fresh_database as fresh

    return asyncio.run(fresh(server_dsn, name))


if __name__ == "__main__":
    main()
