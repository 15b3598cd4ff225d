"""`bridge reconcile`, `bridge dead-letters`, `bridge reset` as real subprocesses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.test_backfill_cli import run_bridge
from tests.fixtures_sandbox import REPO, SandboxWorld
from tests.pipeline.test_reconcile import delete_in_outreach, fetch, zendesk_ids, zendesk_writes
from tests.pipeline.test_sync import prepare_zendesk


def mappings_dir(tmp_path: Path, *, on_delete: str = "delete", broken: bool = False) -> Path:
    """A copy of the example mappings; vehicles with `on_delete`, optionally untranslatable."""
    folder = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings", folder)
    path = folder / "vehicles.yaml"
    text = path.read_text().replace("on_delete: keep", f"on_delete: {on_delete}")
    if broken:  # "120mph" is not an integer without the digits transform
        text = text.replace("{from: speed, type: integer, transform: [digits]}", "{from: speed, type: integer}")
    assert ("transform: [digits]" in text) != broken
    path.write_text(text)
    return folder


@pytest.fixture
async def synced(world: SandboxWorld, tmp_path: Path) -> tuple[SandboxWorld, dict[str, str]]:
    await prepare_zendesk(world)
    env = {"BRIDGE_MAPPINGS": str(mappings_dir(tmp_path)), "USER": "alice"}
    code, _, err = await run_bridge(world, "backfill", env=env)
    assert code == 0, err
    world.sandbox.counters.reset()
    return world, env


async def test_reconcile_guard_then_force_and_the_audit(synced: tuple[SandboxWorld, dict[str, str]]) -> None:
    world, env = synced
    before = zendesk_ids(world.sandbox)
    gone = {f"outreach:vehicles:{v}" for v in delete_in_outreach(world.sandbox, 30)}  # 13 %

    code, out, _ = await run_bridge(world, "reconcile", "vehicles", "--dry-run", env=env)
    assert code == 0 and "dry_run" in out and "missing 30" in out
    code, out, _ = await run_bridge(world, "reconcile", "vehicles", env=env)
    assert code == 3 and "refused" in out and "--force" in out
    assert zendesk_ids(world.sandbox) == before
    code, out, err = await run_bridge(world, "reconcile", "vehicles", "--force", env=env)
    assert code == 0, err
    assert zendesk_ids(world.sandbox) == before - gone

    code, out, _ = await run_bridge(world, "status", "--json", env=env)
    vehicles = next(r for r in json.loads(out) if r["mapping"] == "vehicles")
    repair = vehicles["last_repair"]
    assert (repair["kind"], repair["status"], repair["actor"], repair["deleted"]) == (
        "reconcile", "succeeded", "alice", 30)
    assert vehicles["last_run_status"] == "succeeded" and vehicles["last_run_counts"]["written"] > 0
    code, out, _ = await run_bridge(world, "status", env=env)
    assert "last repair: reconcile succeeded by alice" in out


async def test_reconcile_with_a_failing_listing_deletes_nothing(
    synced: tuple[SandboxWorld, dict[str, str]],
) -> None:
    world, env = synced
    before = zendesk_ids(world.sandbox)
    delete_in_outreach(world.sandbox, 3)
    world.sandbox.faults.add("outreach", "status", status=502, times=-1, path_contains="after")
    env = {**env, "BRIDGE_RECONCILE_PAGE_SIZE": "50", "BRIDGE_MAX_ATTEMPTS": "2"}
    code, out, _ = await run_bridge(world, "reconcile", "vehicles", "--force", env=env)
    assert code == 3 and "nothing was deleted" in out
    assert zendesk_ids(world.sandbox) == before
    assert zendesk_writes(world.sandbox) == 0


async def test_dead_letters_list_retry_purge(world: SandboxWorld, tmp_path: Path) -> None:
    await prepare_zendesk(world)
    bad = {"BRIDGE_MAPPINGS": str(mappings_dir(tmp_path / "bad", broken=True)), "USER": "bob"}
    good = {"BRIDGE_MAPPINGS": str(mappings_dir(tmp_path / "good")), "USER": "bob"}
    code, _, _ = await run_bridge(world, "backfill", env=bad)
    assert code == 1

    code, out, _ = await run_bridge(world, "dead-letters", "list", "--json", env=bad)
    letters = json.loads(out)
    assert code == 0 and len(letters) == world.seed.vehicles
    assert {x["attempts"] for x in letters} == {1} and "top_speed_mph" in letters[0]["error"]

    code, out, _ = await run_bridge(world, "dead-letters", "retry", "--mapping", "vehicles", env=bad)
    assert code == 1 and "still failing 230" in out
    rows = await fetch(world, "SELECT attempts FROM dead_letters")
    assert {r["attempts"] for r in rows} == {2}

    code, out, err = await run_bridge(world, "dead-letters", "retry", "--json", env=good)
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["written"] == world.seed.vehicles
    assert await fetch(world, "SELECT 1 FROM dead_letters") == []
    assert len(zendesk_ids(world.sandbox)) == world.seed.vehicles

    await run_bridge(world, "backfill", "--full", env=bad)  # dead-letter them again
    code, out, _ = await run_bridge(world, "dead-letters", "purge", "--mapping", "vehicles", env=bad)
    assert code == 0 and "purged 230" in out
    assert await fetch(world, "SELECT 1 FROM dead_letters") == []
    kinds = await fetch(world, "SELECT kind, actor FROM runs WHERE kind LIKE 'dead_letter%' ORDER BY id")
    assert [(r["kind"], r["actor"]) for r in kinds] == [
        ("dead_letter_retry", "bob"), ("dead_letter_retry", "bob"), ("dead_letter_purge", "bob")]


async def test_reset_asks_then_backfill_rereads_and_rewrites_nothing(
    synced: tuple[SandboxWorld, dict[str, str]],
) -> None:
    world, env = synced
    code, _, err = await run_bridge(world, "reset", "vehicles", env=env)  # stdin is not a terminal
    assert code == 2 and "--yes" in err
    assert (await fetch(world, "SELECT watermark FROM checkpoints WHERE mapping = 'vehicles'"))[0][0]

    code, out, err = await run_bridge(world, "reset", "vehicles", "--yes", env=env)
    assert code == 0, err
    cp = (await fetch(world, "SELECT watermark, resume_url FROM checkpoints WHERE mapping = 'vehicles'"))[0]
    assert (cp["watermark"], cp["resume_url"]) == (None, None)
    audit = (await fetch(world, "SELECT * FROM runs WHERE kind = 'reset'"))[0]
    assert (audit["status"], audit["actor"], audit["mapping"]) == ("succeeded", "alice", "vehicles")
    assert "watermark was" in audit["note"]

    world.sandbox.counters.reset()
    code, out, err = await run_bridge(world, "backfill", "vehicles", env=env)
    assert code == 0, err
    assert f"fetched {world.seed.vehicles}" in out and "written 0" in out
    assert world.sandbox.counters.count("outreach", method="GET") >= 5  # 230 at 50 a page
    assert zendesk_writes(world.sandbox) == 0
    assert len(await fetch(world, "SELECT 1 FROM id_map WHERE mapping = 'vehicles'")) == world.seed.vehicles
