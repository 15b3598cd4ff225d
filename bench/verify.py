"""Verify benchmark: what `bridge verify` costs on a synced mapping, first and again.

It starts the sandbox process, seeds it, backfills the vehicles, then runs `bridge verify
vehicles` three times as child processes: the first read (every record, from the beginning),
a repeat with nothing changed, and a repeat after `--changed` hand edits. Each line prints the
wall seconds (the export is paced: BRIDGE_DIRECTORY_EXPORTS_PER_MINUTE, 30 here, the High
Volume add-on's limit; 10 by default), export requests, records read, and the CPU of the
bridge process per record read. Figures are printed, never asserted.

    .venv/bin/python bench/verify.py                      # 10,000 vehicles
    .venv/bin/python bench/verify.py --records 50000 --changed 100
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import urllib.request
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
    state,
)
from bench.measure import attribute_only_mappings, run_measured  # noqa: E402

EXPORT_ROUTE = "incremental_custom_object_records"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--changed", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(
        Path(tmp) / "sandbox.json", "--vehicles", str(args.records), "--brands", "20", "--prospects", "50",
    ) as info:
        dsn = fresh_database(server_dsn(), "bridge_bench_verify")
        env = bridge_env(info, dsn, attribute_only_mappings(Path(tmp)), BRIDGE_DIRECTORY_EXPORTS_PER_MINUTE="30")
        bridge(["migrate"], env)
        create_objects(env)
        bridge(["backfill"], env)
        _zendesk_control(info, "exports", {"rate_limit": 1000})
        print(f"{'pass':>22} {'wall s':>7} {'exports':>7} {'read':>8} {'cpu µs/rec':>10} {'found':>6}")
        _pass(info, env, "first (everything)")
        _pass(info, env, "again, nothing changed")
        records = state(info, [], ["vehicle"])["zendesk"]["vehicle"]
        for record in records[: args.changed]:
            _zendesk_control(info, "records/edit",
                             {"object": "vehicle", "id": record["id"], "name": record["name"] + " (edited)"})  # fmt: skip
        _pass(info, env, f"again, {args.changed} edited")


def _zendesk_control(info: dict[str, Any], path: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(f"{info['zendesk_url']}/_sandbox/zendesk/{path}", data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read() or b"null")


def _pass(info: dict[str, Any], env: dict[str, str], label: str) -> None:
    reset_counters(info)
    run = run_measured([sys.executable, "-m", "bridge", "verify", "vehicles", "--json"], env, ok=(0, 1))
    report = json.loads(run.stdout)
    exports = sum(v for k, v in counters(info)["by_route"].get("zendesk", {}).items() if EXPORT_ROUTE in k)
    read = max(int(report["records_read"]), 1)
    found = report["edited"] + report["deleted"] + report["unknown"] + report["stale"]
    print(f"{label:>22} {run.seconds:>7.1f} {exports:>7} {report['records_read']:>8} "
          f"{run.cpu_seconds * 1e6 / read:>10.0f} {found:>6}", flush=True)


if __name__ == "__main__":
    main()
