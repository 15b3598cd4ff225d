"""The CLI's garbage collection settings: what a command runs under, and what it leaves behind."""

from __future__ import annotations

import argparse
import gc
from typing import Any

import pytest

from bridge import cli
from bridge.commands import sync


def test_a_command_runs_with_start_up_objects_frozen_and_leaves_the_collector_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}

    async def fake_migrate(args: argparse.Namespace, settings: Any) -> int:
        seen["frozen"], seen["threshold"] = gc.get_freeze_count(), gc.get_threshold()
        return 0

    monkeypatch.setattr(sync, "cmd_migrate", fake_migrate)
    before = gc.get_threshold()
    assert cli.main(["migrate"]) == 0
    assert seen["frozen"] > 0 and seen["threshold"][0] == 10_000
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_start_up_runs_no_garbage_collection() -> None:
    """The imports before a command run without the cyclic collector (bridge/__main__.py)."""
    import subprocess
    import sys

    code = (
        "import gc, sys\n"
        "runs = []\n"
        "gc.callbacks.append(lambda phase, info: runs.append(info['generation']) if phase == 'start' else None)\n"
        "from bridge import __main__ as launcher\n"
        "before = len(runs)\n"
        "main = launcher.load()\n"
        "print(len(runs) - before, gc.isenabled(), 'bridge.commands.common' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "True", "True"]  # none while importing; on again for the command
