"""`bridge mappings scaffold`, `schema plan/apply`, `validate --remote` as real subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_backfill_cli import run_bridge
from tests.fixtures_sandbox import SandboxWorld


async def test_from_an_empty_zendesk_scaffold_apply_and_backfill_land_the_records(
    world: SandboxWorld, tmp_path: Path
) -> None:
    sb, env = world.sandbox, {"BRIDGE_MAPPINGS": str(tmp_path)}
    assert sb.zendesk.objects == {}
    for outreach_type in ("vehicle_brands", "vehicles"):
        code, out, err = await run_bridge(world, "mappings", "scaffold", outreach_type,
                                          "--out", str(tmp_path / f"{outreach_type}.yaml"), env=env)
        assert code == 0, err
    text = (tmp_path / "vehicles.yaml").read_text()
    assert "brand: {from: brand, target: mapping:vehicle_brands}" in text
    assert "main_driver: {from: main_driver, target: zen:user, match: email}" in text

    code, out, err = await run_bridge(world, "schema", "plan", env=env)
    assert code == 0, err
    assert "to create: 2 object(s)" in out and "lookup → zen:custom_object:vehicle_brand" in out
    assert sb.zendesk.objects == {}, "plan changed something"
    code, out, err = await run_bridge(world, "schema", "apply", env=env)
    assert code == 0, err
    sb.counters.reset()
    code, again, err = await run_bridge(world, "schema", "apply", env=env)
    assert code == 0, err
    assert sb.counters.count("zendesk", method="POST") == sb.counters.count("zendesk", route="oauth_tokens")
    assert "0 created" in again

    code, out, err = await run_bridge(world, "backfill", env=env)

    assert code == 0, err
    assert len(sb.zendesk.records("vehicle")) == len(sb.outreach.ids("vehicles")) == 230
    assert len(sb.zendesk.records("vehicle_brand")) == len(sb.outreach.ids("vehicle_brands"))
    some = sb.zendesk.records("vehicle")[0]["custom_object_fields"]
    assert some["vehicle_name"] and some["brand"] and some["registered_at"]


async def test_plan_json_is_machine_readable(world: SandboxWorld) -> None:
    code, out, err = await run_bridge(world, "schema", "plan", "--json")

    assert code == 0, err
    plan = json.loads(out)
    assert {o["object"]: o["action"] for o in plan["objects"]} == {"vehicle_brand": "create", "vehicle": "create"}


async def test_a_refused_token_sees_no_custom_objects_and_is_told_why(world: SandboxWorld, tmp_path: Path) -> None:
    bad = {"OUTREACH_ACCESS_TOKEN": "not-a-token-the-sandbox-knows", "BRIDGE_MAPPINGS": str(tmp_path)}
    (tmp_path / "vehicles.yaml").write_text(
        "source: {type: vehicles}\ntarget: {object: vehicle, name: '{vehicle_name}'}\nfields: {vehicle_name: vehicle_name}\n")

    code, out, err = await run_bridge(world, "mappings", "scaffold", "vehicles", env=bad)

    assert code == 2
    assert "custom objects are only listed in /api/v2/schema for an authenticated caller" in err
    assert "refused the credentials" in err and "not-a-token" not in err + out
    code, out, err = await run_bridge(world, "validate", "--remote", env=bad)
    assert code == 2
    assert f"{tmp_path / 'vehicles.yaml'}: source.type: Outreach type 'vehicles' is not in the schema" in err


async def test_validate_remote_passes_once_applied(world: SandboxWorld) -> None:
    code, out, err = await run_bridge(world, "validate", "--remote")
    assert code == 2 and "target.object: Zendesk has no custom object 'vehicle'" in err

    assert (await run_bridge(world, "schema", "apply"))[0] == 0
    code, out, err = await run_bridge(world, "validate", "--remote")

    assert code == 0, err
    assert "remote: every mapping matches" in out
