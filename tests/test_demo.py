"""`bridge demo` end to end, as `make demo` runs it: the story, the worker part, exit 0."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.fixtures_sandbox import REPO


@pytest.mark.timeout(180)
def test_the_demo_tells_the_whole_story_and_a_live_change_reaches_zendesk(pg_server_dsn: str) -> None:
    env = {**os.environ, "DATABASE_URL": pg_server_dsn, "LOG_FORMAT": "console"}
    env.pop("OUTREACH_ACCESS_TOKEN", None)
    done = subprocess.run([sys.executable, "-m", "bridge", "demo", "--vehicles", "60"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=170)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "schema apply: limits checked, created 2 object(s)" in out
    assert "vehicles: Outreach 65, Zendesk 65" in out
    [live] = [line for line in out.splitlines() if line.startswith("worker: ")]
    assert "was in Zendesk" in live and "(a webhook)" in live and "polled, every 5s here" in live
