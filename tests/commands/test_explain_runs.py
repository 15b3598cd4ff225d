"""`bridge explain` after real runs against the sandbox (in process, over loopback)."""

from __future__ import annotations

import argparse
import json
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge import wiring
from bridge.commands.explain import cmd_explain
from bridge.mapping.load import load_mappings
from bridge.pipeline.reconcile import ReconcileOptions, reconcile_mapping
from bridge.sandbox.seed import seed_demo
from bridge.sandbox.server import Sandbox
from tests.fixtures_sandbox import REPO, SandboxWorld, settings_for
from tests.pipeline.test_sync import backfill, prepare_zendesk

LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")  # structlog's console lines


@pytest.fixture
async def small(db_dsn: str, tmp_path: Path) -> AsyncIterator[SandboxWorld]:
    """A small seeded sandbox (a backfill takes a fraction of a second), mappings in tmp_path."""
    shutil.copytree(REPO / "mappings", tmp_path / "mappings")
    async with Sandbox() as sandbox:
        seed = seed_demo(sandbox, vehicles=21, brands=3, prospects=5)
        world = SandboxWorld(sandbox, seed, settings_for(sandbox, seed, db_dsn, bridge_mappings=tmp_path / "mappings"))
        await prepare_zendesk(world)
        yield world


async def explain(world: SandboxWorld, capsys: pytest.CaptureFixture[str], ident: str | int,
                  *, live: bool = False) -> tuple[dict[str, Any], str]:  # fmt: skip
    """`bridge explain vehicles ID --json` and the text, with the sandbox's request counts."""
    world.sandbox.counters.reset()
    runs = []
    for as_json in (True, False):
        args = argparse.Namespace(mapping="vehicles", id=str(ident), json=as_json, live=live)
        assert await cmd_explain(args, world.settings) == 0
        printed = capsys.readouterr().out.splitlines()
        runs.append("\n".join(line for line in printed if not LOG_LINE.match(line)))
    return json.loads(runs[0]), runs[1]


async def reconcile(world: SandboxWorld) -> None:
    mapping = load_mappings(world.settings.bridge_mappings)["vehicles"]
    async with wiring.open_pool(world.settings) as pool, wiring.open_services(world.settings, pool) as services:
        report = await reconcile_mapping(mapping, services, ReconcileOptions(force=True))
    assert report.status == "succeeded"


def requests(world: SandboxWorld, api: str) -> int:
    """Requests for records (not for tokens) each of two explain calls sent, on average."""
    counters = world.sandbox.counters
    tokens = counters.count(api, route="oauth_tokens") + counters.count(api, route="oauth_token")
    return (counters.count(api) - tokens) // 2


async def test_a_written_record_is_explained_from_state_without_a_request(
    small: SandboxWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    await backfill(small)
    vid = small.sandbox.outreach.ids("vehicles")[4]
    data, text = await explain(small, capsys, f"outreach:vehicles:{vid}")
    assert data["status"] == "in_zendesk" and data["source_id"] == str(vid)
    zendesk = small.sandbox.zendesk.record_by_external_id("vehicle", f"outreach:vehicles:{vid}")
    assert zendesk is not None and data["zendesk_id"] == zendesk["id"]
    assert small.sandbox.counters.total("outreach") == small.sandbox.counters.total("zendesk") == 0
    assert f"in Zendesk as record {zendesk['id']}" in text


async def test_a_record_created_after_the_run_is_not_read_yet(
    small: SandboxWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    await backfill(small)
    vid = small.sandbox.outreach.put("vehicles", {"vehicle_name": "Ecto-1", "color": "white"})
    data, text = await explain(small, capsys, vid)
    assert data["status"] == "not_read_yet" and "after the watermark" in data["reason"]
    assert requests(small, "outreach") == 1 and requests(small, "zendesk") == 0
    assert data["would_write_from"] == "outreach"  # the one answer serves the preview too
    assert {r["field"]: r["would_write"] for r in data["fields"]}["vehicle_name"] == "Ecto-1"
    assert data["reason"] in text


async def test_an_id_outreach_does_not_have_was_never_seen(
    small: SandboxWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    data, text = await explain(small, capsys, 987654)
    assert data["status"] == "never_seen" and "Outreach has no such record" in data["reason"]
    assert requests(small, "outreach") == 1 and data["reason"] in text


async def test_a_record_outside_the_filter_is_filtered_out(
    small: SandboxWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    path = small.settings.bridge_mappings / "vehicles.yaml"
    path.write_text(path.read_text().replace("  filter: {}", "  filter: {color: red}"))
    await backfill(small)
    outreach = small.sandbox.outreach
    blue = next(v for v in outreach.ids("vehicles") if (outreach.get("vehicles", v) or {})["attributes"]["color"] != "red")
    data, text = await explain(small, capsys, blue)
    assert data["status"] == "filtered_out" and "the filter wants 'red'" in data["reason"]
    assert data["reason"] in text


async def test_a_record_a_run_could_not_write_is_dead_lettered(
    small: SandboxWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    vid = small.sandbox.outreach.ids("vehicles")[2]
    small.sandbox.outreach.serve_raw("vehicles", vid, registeredAt="the day after tomorrow")
    await backfill(small)
    data, text = await explain(small, capsys, vid)
    assert data["status"] == "dead_lettered" and "registered_on" in data["reason"]
    assert data["dead_letter"]["attempts"] == 1 and requests(small, "outreach") == 0
    assert data["reason"] in text


async def test_a_record_deleted_in_outreach_and_kept(small: SandboxWorld, capsys: pytest.CaptureFixture[str]) -> None:
    await backfill(small)
    vid = small.sandbox.outreach.ids("vehicles")[0]
    small.sandbox.outreach.delete("vehicles", vid)
    await reconcile(small)
    data, text = await explain(small, capsys, vid)
    assert data["status"] == "deleted_kept" and "on_delete: keep" in data["reason"]
    assert data["reason"] in text


async def test_live_costs_one_request_per_api(small: SandboxWorld, capsys: pytest.CaptureFixture[str]) -> None:
    await backfill(small)
    vid = small.sandbox.outreach.ids("vehicles")[3]
    data, text = await explain(small, capsys, vid, live=True)
    assert requests(small, "outreach") == 1 and requests(small, "zendesk") == 1
    assert data["live"]["outreach_found"] and data["live"]["zendesk_found"]
    assert "Zendesk now" in text


async def edit_by_hand(world: SandboxWorld, external_id: str, fields: dict[str, Any]) -> None:
    """A person changes the record in Zendesk: PATCH through the API, as an agent's tool would."""
    record = world.sandbox.zendesk.record_by_external_id("vehicle", external_id)
    assert record is not None
    url = f"{world.sandbox.zendesk_url}/api/v2/custom_objects/vehicle/records/{record['id']}"
    headers = {"Authorization": f"Bearer {world.seed.zendesk_token}"}
    async with aiohttp.ClientSession() as session:
        body = {"custom_object_record": {"custom_object_fields": fields}}
        async with session.patch(url, json=body, headers=headers) as resp:
            assert resp.status == 200, await resp.text()


async def test_live_shows_a_hand_edit_in_zendesk_against_the_last_written(
    small: SandboxWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    await backfill(small)
    vid = small.sandbox.outreach.ids("vehicles")[5]
    await edit_by_hand(small, f"outreach:vehicles:{vid}", {"color": "hot pink"})
    data, text = await explain(small, capsys, vid, live=True)
    assert requests(small, "outreach") == 1 and requests(small, "zendesk") == 1
    assert [r["field"] for r in data["fields"] if r["zendesk_differs"]] == ["color"]
    assert not any(r["differs"] for r in data["fields"])  # nothing changed in Outreach or the mapping
    color = next(r for r in data["fields"] if r["field"] == "color")
    assert color["zendesk_now"] == "hot pink" and color["last_written"] == color["would_write"]
    line = next(x for x in text.splitlines() if x[3:].startswith("color"))
    assert line.startswith(" !") and "hot pink" in line


async def test_a_mapping_change_shows_as_the_field_it_changes(
    small: SandboxWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    await backfill(small)
    path = small.settings.bridge_mappings / "vehicles.yaml"
    path.write_text(path.read_text().replace("color: {from: color, type: text, transform: [strip, lower]}",
                                             "color: {from: color, type: text, transform: [strip, upper]}"))
    vid = small.sandbox.outreach.ids("vehicles")[6]
    data, _ = await explain(small, capsys, vid)
    assert [r["field"] for r in data["fields"] if r["differs"]] == ["color"]
    color = next(r for r in data["fields"] if r["field"] == "color")
    assert color["would_write"] == color["last_written"].upper()
    assert small.sandbox.counters.total("outreach") == 0  # rebuilt from the stored read


async def test_a_record_deleted_in_outreach_and_removed(small: SandboxWorld, capsys: pytest.CaptureFixture[str]) -> None:
    path = small.settings.bridge_mappings / "vehicles.yaml"
    path.write_text(path.read_text().replace("on_delete: keep", "on_delete: delete"))
    await backfill(small)
    vid = small.sandbox.outreach.ids("vehicles")[1]
    small.sandbox.outreach.delete("vehicles", vid)
    await reconcile(small)
    assert small.sandbox.zendesk.record_by_external_id("vehicle", f"outreach:vehicles:{vid}") is None
    data, text = await explain(small, capsys, vid)
    assert data["status"] == "deleted_removed" and "on_delete: delete" in data["reason"]
    assert requests(small, "outreach") == 0 and data["changelog"][0]["action"] == "deleted"
    assert data["reason"] in text
