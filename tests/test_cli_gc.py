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
