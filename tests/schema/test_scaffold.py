"""Starter mappings from a schema: types, keys, lookups, and a file that loads as it is."""

from __future__ import annotations

from pathlib import Path

from bridge.mapping.load import load_mapping, load_mappings
from bridge.outreach.schema import parse_schema
from bridge.schema.desired import wanted_objects
from bridge.schema.scaffold import ScaffoldOptions, default_object_key, readers_in, scaffold, snake_case


def attr(type: str, **extra: object) -> dict[str, object]:
    return {"type": type, "filterable": True, "sortable": True, **extra}


def rel(target: str) -> dict[str, object]:
    return {"type": "object", "x-target-type": target}


SCHEMA = {"definitions": {
    "shipments": {
        "definitions": {
            "id": attr("integer"), "createdAt": attr("string", format="date-time"),
            "updatedAt": attr("string", format="date-time"),
            "trackingName": attr("string"), "weight": attr("number"), "pieces": attr("integer"),
            "fragile": attr("boolean"), "status": attr("string", enum=["new", "sent", None]),
            "tags": attr("array"), "address": attr("object"), "shippedAt": attr("string", format="date-time"),
            "carrier": attr("string"),
        },
        "properties": {"relationships": {"properties": {
            "recipient": rel("prospect"), "company": rel("account"), "carrier": rel("carriers"),
            "route": rel("routes"), "deal": rel("opportunity"), "owner": {"type": "object"},
        }}},
        "links": [{"rel": "instances", "href": "/api/v2/customObjects/shipments"}],
    },
    "carriers": {"definitions": {"name": attr("string"), "updatedAt": attr("string", format="date-time")}},
}}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def test_attribute_types_become_zendesk_types_and_the_file_loads(tmp_path: Path) -> None:
    types = parse_schema(SCHEMA)
    write(tmp_path, "carriers", scaffold(types["carriers"], ScaffoldOptions("carriers"), "test"))
    readers = readers_in(tmp_path)
    text = scaffold(types["shipments"], ScaffoldOptions("shipments", readers=readers), "test")

    mapping = load_mapping(write(tmp_path, "shipments", text), known={"carriers"})

    types_by_key = {k: f.type for k, f in mapping.fields.items()}
    assert types_by_key == {"tracking_name": "text", "weight": "decimal", "pieces": "integer", "fragile": "checkbox",
                            "status": "dropdown", "tags": "text", "shipped_at": "date", "carrier": "text"}
    assert mapping.fields["status"].options == ["new", "sent"]
    assert mapping.fields["tags"].transform[0].name == "join"
    assert mapping.fields["shipped_at"].from_ == "shippedAt"
    assert mapping.target.name == "{trackingName}" and mapping.target.object == "shipment"
    assert mapping.source.custom_object is True and mapping.source.type == "shipments"
    rels = {k: (r.target, r.match) for k, r in mapping.relationships.items()}
    assert rels == {"recipient": ("zen:user", "email"), "company": ("zen:organization", "name"),
                    "carrier_lookup": ("mapping:carriers", None)}
    assert "# route: {from: route, target: mapping:routes}  # no mapping reads routes yet" in text
    assert "# deal: " in text and "no Zendesk counterpart" in text
    assert "# owner: " in text and "# address: " in text


def test_a_scaffold_plans_unchanged(tmp_path: Path) -> None:
    types = parse_schema(SCHEMA)
    write(tmp_path, "carriers", scaffold(types["carriers"], ScaffoldOptions("carriers"), "test"))
    write(tmp_path, "ships", scaffold(types["shipments"], ScaffoldOptions("ships", "ship", readers_in(tmp_path)), "t"))

    mappings = load_mappings(tmp_path)
    wanted = {o.key: o for o in wanted_objects(mappings, ["carriers", "ships"])}

    assert set(wanted) == {"carrier", "ship"}
    assert wanted["ship"].depends_on == ("carrier",)


def test_keys_and_object_keys() -> None:
    assert snake_case("registeredAt") == "registered_at"
    assert snake_case("Top Speed (mph)") == "top_speed_mph"
    assert snake_case("123") == "f_123"
    assert default_object_key("vehicle_brands") == "vehicle_brand"
    assert default_object_key("companies") == "company"
    assert default_object_key("prospects") == "prospect"
