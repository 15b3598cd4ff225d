"""deploy/monitoring/: the alerting rules pass `promtool check rules` and their unit tests, and
every metric the rules and the Grafana dashboard query is one a real worker's /metrics serves.

promtool comes from Debian's `prometheus` package: `.ci/run` installs it when it is missing;
where it cannot be had, the promtool tests skip and say so.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import workers  # noqa: F401  (fixture)
from tests.e2e.test_worker import dsn_of, prepare, runs_of
from tests.e2e.worker_proc import WorkerProc, wait_for, write_mappings
from tests.fixtures_sandbox import REPO, SandboxWorld

MONITORING = REPO / "deploy" / "monitoring"
RULES = MONITORING / "bridge-rules.yaml"
RULES_TESTS = MONITORING / "bridge-rules.test.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
METRIC = re.compile(r"\bbridge_[a-z_]+\b")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is missing: it comes from Debian's `prometheus` package "
                    "(apt-get install prometheus; .ci/run installs it)")  # fmt: skip
    return found


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=MONITORING, capture_output=True, text=True, timeout=60)


def test_the_rules_pass_promtool_check() -> None:
    result = run_promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_pass_their_unit_tests() -> None:
    result = run_promtool("test", "rules", RULES_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_catches_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(RULES.read_text().replace("max by (mapping) (bridge_lag_seconds) > 3600", "max by (mapping (x"))
    result = subprocess.run([promtool(), "check", "rules", str(broken)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0


def rule_queries() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def dashboard_queries() -> dict[str, str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {f"{p['title']} [{t['refId']}]": t["expr"] for p in panels for t in p["targets"]}


def test_the_rules_cover_what_operators_must_hear_about() -> None:
    queried = " ".join(rule_queries().values())
    for metric in ("bridge_last_run_failed", "bridge_runs_total", "bridge_dead_letters", "bridge_lag_seconds",
                   'status="429"', "bridge_webhooks_disabled", "bridge_leases_lost_total"):  # fmt: skip
        assert metric in queried


def test_the_dashboard_shows_outcomes_lag_requests_429s_job_slots_and_freshness() -> None:
    queried = " ".join(dashboard_queries().values())
    for metric in ("bridge_records_total", "bridge_lag_seconds", "bridge_api_requests_total", 'status="429"',
                   "bridge_zendesk_job_slots", "bridge_zendesk_jobs_in_flight",
                   "bridge_watermark_timestamp_seconds"):  # fmt: skip
        assert metric in queried


def served_names(text: str) -> set[str]:
    """The sample names of a Prometheus text exposition."""
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line and not line.startswith("#")}


async def test_every_metric_queried_is_served_by_a_real_worker(
    world: SandboxWorld, tmp_path: Path, workers: list[WorkerProc]  # noqa: F811
) -> None:
    mappings = write_mappings(tmp_path / "mappings", "1h", prospects=False)
    await prepare(world, mappings)
    dsn = dsn_of(world)
    workers.append(worker := await WorkerProc.start(world, mappings))

    async def both_ran() -> bool:
        return sum((await runs_of(dsn)).values()) == 2

    await wait_for(both_ran, "one run of each mapping")
    status, text = await worker.get("/metrics")
    assert status == 200
    served = served_names(text)
    missing = {
        (where, name)
        for where, expr in {**rule_queries(), **dashboard_queries()}.items()
        for name in METRIC.findall(expr)
        if name not in served
    }
    assert not missing, f"queried but not served: {sorted(missing)}"
    code, _ = await worker.stop(signal.SIGTERM)
    assert code == 0
