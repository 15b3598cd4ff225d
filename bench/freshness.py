"""Freshness: seconds from a change in Outreach to its write in Zendesk, by trigger.

It starts the seeded sandbox in its own process with 50 ms added to every request and
Zendesk limited to 700 requests/min, backfills, starts `bridge worker` with webhooks on and
runs `bridge webhooks ensure` against it, then changes records for a minute at a steady
rate: prospects (a standard type: Outreach sends webhooks, the mapping is polled hourly as a
safety net) and vehicles (a custom object: no webhooks, polled every 15 s). Each change is
timed by the sandbox's own clock, and so is each Zendesk write, so the latency is measured
by the APIs' side, not by bridge. It prints p50/p95/max change-to-write seconds per
trigger, the changes that never landed, and the requests each API served.

    .venv/bin/python bench/freshness.py                  # a minute, 2 changes a second
    .venv/bin/python bench/freshness.py --seconds 20 --rate 4

Goals: p95 under 3 s for webhook-driven types; under the period + 3 s for the polled object.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.harness import (  # noqa: E402
    bridge,
    bridge_env,
    control,
    counters,
    create_objects,
    drop_database,
    fresh_database,
    reset_counters,
    sandbox_process,
    server_dsn,
)

POLL_SECONDS = 15
SECRET = "bench-webhook-secret"
PROSPECTS = """source: {type: prospects, custom_object: false}
target: {object: prospect_copy, name: "{firstName} {lastName}"}
fields:
  first_name: firstName
  title: title
schedule: {every: 1h}
"""


@dataclass(frozen=True)
class Change:
    trigger: str  # webhook | poll
    external_id: str
    field: str
    value: str
    at: float  # the sandbox's monotonic clock


def write_mappings(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prospects.yaml").write_text(PROSPECTS)
    vehicles = (REPO / "mappings" / "vehicles.yaml").read_text().replace("{every: 5m}", f"{{every: {POLL_SECONDS}s}}")
    (folder / "vehicles.yaml").write_text(vehicles)
    (folder / "vehicle_brands.yaml").write_text((REPO / "mappings" / "vehicle_brands.yaml").read_text())
    return folder


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the worker exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the worker did not answer /healthz within 60 s")


def make_changes(info: dict[str, Any], seconds: float, rate: float, ids: dict[str, list[int]]) -> list[Change]:
    rng = random.Random(11)
    changes: list[Change] = []
    step, n, started = 1 / rate, 0, time.monotonic()
    while time.monotonic() - started < seconds:
        n += 1
        if n % 2:
            pid = rng.choice(ids["prospect"])
            at = control(info, "POST", "outreach/update", {"type": "prospect", "id": pid, "attributes": {"title": f"t{n}"}})["at"]
            changes.append(Change("webhook", f"outreach:prospects:{pid}", "title", f"t{n}", at))
        else:
            vid = rng.choice(ids["vehicles"])
            at = control(info, "POST", "outreach/update", {"type": "vehicles", "id": vid, "attributes": {"color": f"c{n}"}})["at"]
            changes.append(Change("poll", f"outreach:vehicles:{vid}", "color", f"c{n}", at))
        time.sleep(max(0.0, started + n * step - time.monotonic()))
    return changes


def latencies(changes: list[Change], writes: list[dict[str, Any]]) -> tuple[dict[str, list[float]], int]:
    """Per trigger, seconds from each change to the first write carrying its value or a later
    change's value of the same field (a change overtaken before it landed is in that write)."""
    found: dict[str, list[float]] = {"webhook": [], "poll": []}
    by_id: dict[str, list[dict[str, Any]]] = {}
    for w in writes:
        by_id.setdefault(str(w["external_id"]), []).append(w)
    lost = 0
    for i, change in enumerate(changes):
        values = {c.value for c in changes[i:] if (c.external_id, c.field) == (change.external_id, change.field)}
        landed = [w["at"] for w in by_id.get(change.external_id, [])
                  if w["at"] >= change.at and w["fields"].get(change.field) in values]  # fmt: skip
        if landed:
            found[change.trigger].append(min(landed) - change.at)
        else:
            lost += 1
    return found, lost


def summary(name: str, values: list[float], goal: float) -> str:
    if not values:
        return f"{name:8} no change landed"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    verdict = "meets" if p95 < goal else "MISSES"
    return (f"{name:8} {len(values):4} changes  p50 {statistics.median(ordered):6.2f} s  p95 {p95:6.2f} s  "
            f"max {ordered[-1]:6.2f} s  ({verdict} the goal p95 < {goal:.0f} s)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long changes are made")
    parser.add_argument("--rate", type=float, default=2.0, help="changes per second (half each type)")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    server, name = server_dsn(), f"bridge_bench_{uuid.uuid4().hex[:8]}"
    dsn = fresh_database(server, name)
    work = Path(tempfile.mkdtemp(prefix="bridge-freshness-"))
    mappings = write_mappings(work / "mappings")
    worker: subprocess.Popen[bytes] | None = None
    try:
        with sandbox_process(work / "info.json", "--vehicles", "300", "--prospects", "300",
                             "--latency-ms", str(args.latency_ms)) as info:  # fmt: skip
            port = free_port()
            env = bridge_env(info, dsn, mappings, OUTREACH_WEBHOOK_SECRET=SECRET, PORT=str(port),
                             BRIDGE_PUBLIC_URL=f"http://127.0.0.1:{port}")  # fmt: skip
            bridge(["migrate"], env)
            create_objects(env)
            bridge(["backfill"], env)
            worker = subprocess.Popen([sys.executable, "-m", "bridge", "worker"], cwd=REPO, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            wait_healthy(port, worker)
            bridge(["webhooks", "ensure"], env)
            state = control(info, "GET", "state?outreach=prospect,vehicles&zendesk=")
            ids = {t: [int(r["id"]) for r in state["outreach"][t]] for t in ("prospect", "vehicles")}
            reset_counters(info)  # also empties the write log: what follows is the changes' alone
            changes = make_changes(info, args.seconds, args.rate, ids)
            time.sleep(POLL_SECONDS + 10)  # the last polled change needs one more period
            writes = control(info, "GET", "writes")["writes"]
            served = counters(info)
        found, lost = latencies(changes, writes)
        print(f"freshness over {args.seconds:.0f} s, {len(changes)} changes, {args.latency_ms:.0f} ms latency, "
              f"Zendesk limited to 700 requests/min")  # fmt: skip
        print(summary("webhook", found["webhook"], 3.0))
        print(summary("poll", found["poll"], POLL_SECONDS + 3.0))
        print(f"lost: {lost} change(s) never reached Zendesk")
        totals, statuses = served["totals"], served["by_status"]
        for api in ("outreach", "zendesk"):
            print(f"{api}: {totals.get(api, 0)} requests while changing, "
                  f"{statuses.get(api, {}).get('429', 0)} answered 429")  # fmt: skip
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=60)
        drop_database(server, name)
        if not os.environ.get("KEEP"):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
