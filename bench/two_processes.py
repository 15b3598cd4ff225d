"""Two processes, one account: a `bridge worker` and a `bridge backfill` at the same moment.

The sandbox's Zendesk allows 700 requests a minute (bench/harness.py), counted over every
caller of the account. The worker syncs vehicles (attributes only), the backfill a copy of the
prospects, each on its own mappings folder, one database. It prints, per run: records/s over
both against the bound (700/min × 100 items per request), Zendesk requests per 1,000 records,
the 429s, and the busiest minute of Zendesk requests (any 60 s span, from the sandbox's arrival
log) against the budget. Figures are printed, never asserted.

    .venv/bin/python bench/two_processes.py                          # 20,000 + 20,000 records
    .venv/bin/python bench/two_processes.py --records 5000 --budget 700 --budget 100000

`--budget` sets ZENDESK_RATE_LIMIT: 700 is the account's own limit; a far larger value leaves
each process to pace itself from the rate-limit headers alone, as before the shared budget.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from bench.harness import (  # noqa: E402
    ZENDESK_RATE_LIMIT,
    bridge,
    bridge_env,
    counters,
    create_objects,
    query,
    reset_counters,
    sandbox_process,
    scratch_database,
    server_dsn,
)
from bridge.sandbox.counters import busiest_window  # noqa: E402

PROSPECTS = {
    "source": {"type": "prospects", "custom_object": False},
    "target": {"object": "prospect_copy", "name": "{firstName} {lastName}"},
    "fields": {"first_name": "firstName", "last_name": "lastName", "title": "title"},
    "schedule": {"every": "1h"},
}
BOUND = ZENDESK_RATE_LIMIT / 60 * 100  # records/s: every request a full bulk job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000, help="per process")
    parser.add_argument("--budget", type=int, action="append", help="ZENDESK_RATE_LIMIT")
    args = parser.parse_args()
    server = server_dsn()
    print(f"{'budget':>7} {'records':>8} {'rec/s':>7} {'bound':>6} {'share':>6} {'zd/1k':>6} "
          f"{'429s':>5} {'busiest min':>11} {'wall s':>7}")
    for budget in args.budget or [ZENDESK_RATE_LIMIT]:
        row = scenario(server, args.records, budget)
        print(f"{budget:>7} {2 * args.records:>8} {row['rate']:>7.0f} {BOUND:>6.0f} {row['rate'] / BOUND:>6.2f} "
              f"{row['zendesk_per_1k']:>6.1f} {row['429s']:>5} {row['busiest']:>6}/{ZENDESK_RATE_LIMIT:<4} "
              f"{row['seconds']:>7.1f}", flush=True)


def scenario(server: str, records: int, budget: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(
        Path(tmp) / "sandbox.json", "--vehicles", str(records), "--brands", "20", "--prospects", str(records),
    ) as info, scratch_database(server, "bridge_bench_two") as dsn:
        vehicles, prospects, every = _mappings(Path(tmp))
        env = bridge_env(info, dsn, every, ZENDESK_RATE_LIMIT=str(budget))
        bridge(["migrate"], env)
        create_objects(env)
        reset_counters(info)
        started = time.monotonic()
        port = _free_port()
        worker = subprocess.Popen([sys.executable, "-m", "bridge", "worker"], cwd=REPO, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, env={**env, "BRIDGE_MAPPINGS": str(vehicles), "PORT": str(port)})  # fmt: skip
        try:
            bridge(["backfill"], {**env, "BRIDGE_MAPPINGS": str(prospects)})
            _wait_for_worker_run(dsn, worker)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
        seconds = time.monotonic() - started
        snapshot = counters(info)
        arrivals = sorted(e["arrived"] for e in snapshot["log"] if e["api"] == "zendesk")
        return {
            "rate": 2 * records / seconds,
            "zendesk_per_1k": snapshot["totals"].get("zendesk", 0) * 1000 / (2 * records),
            "429s": snapshot["by_status"].get("zendesk", {}).get("429", 0),
            "busiest": busiest_window(arrivals, 60.0),
            "seconds": seconds,
        }


def _mappings(tmp: Path) -> tuple[Path, Path, Path]:
    """Folders: the worker's (vehicles without lookups), the backfill's (prospects), and both."""
    doc = yaml.safe_load((REPO / "mappings" / "vehicles.yaml").read_text())
    doc.pop("relationships", None)
    doc["schedule"] = {"every": "1h"}
    folders = [tmp / "vehicles", tmp / "prospects", tmp / "every"]
    for folder in folders:
        folder.mkdir()
    for folder, name, body in ((folders[0], "vehicles", doc), (folders[1], "prospects", PROSPECTS),
                               (folders[2], "vehicles", doc), (folders[2], "prospects", PROSPECTS)):  # fmt: skip
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(body))
    return folders[0], folders[1], folders[2]


def _wait_for_worker_run(dsn: str, worker: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited with {worker.returncode}")
        rows = query(dsn, "SELECT status FROM runs WHERE mapping = 'vehicles' AND finished_at IS NOT NULL")
        if rows:
            if rows[0]["status"] != "succeeded":
                raise SystemExit(f"the worker's vehicles run ended {rows[0]['status']}")
            return
        time.sleep(0.5)
    raise SystemExit("the worker's vehicles run did not finish within an hour")




def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    main()
