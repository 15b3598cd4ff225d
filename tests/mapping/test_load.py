"""Loading a folder of mapping files: every problem, with file:line and key path, at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.errors import ConfigError, MappingError, MappingProblem
from bridge.mapping.load import load_mapping, load_mappings

REPO_MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"

GOOD = """\
source:
  type: vehicles
target:
  object: vehicle
  name: "{vehicle_name}"
fields:
  vehicle_name: vehicle_name
  top_speed_mph: {from: speed, type: integer, transform: [digits]}
"""

BRANDS = """\
source: {type: vehicle_brands}
target: {object: vehicle_brand, name: "{name}"}
fields: {brand_name: name}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(folder: Path) -> list[MappingProblem]:
    with pytest.raises(MappingError) as caught:
        load_mappings(folder)
    assert isinstance(caught.value, ConfigError)
    return caught.value.problems


def only(folder: Path) -> MappingProblem:
    found = problems_of(folder)
    assert len(found) == 1, found
    return found[0]


def test_example_mappings_load() -> None:
    mappings = load_mappings(REPO_MAPPINGS)
    assert set(mappings) == {"vehicles", "vehicle_brands"}
    vehicles = mappings["vehicles"]
    assert vehicles.target.object == "vehicle"
    assert vehicles.depends_on() == {"vehicle_brands"}
    assert vehicles.fields["top_speed_mph"].from_ == "speed"
    assert vehicles.schedule.seconds() == 300
    assert mappings["vehicle_brands"].schedule.seconds() == 900
    assert mappings["vehicle_brands"].fields["founded"].type == "integer"


def test_good_folder(tmp_path: Path) -> None:
    write(tmp_path, "vehicles.yaml", GOOD)
    write(tmp_path, "brands.yml", BRANDS)
    (tmp_path / "notes.txt").write_text("ignored")
    mappings = load_mappings(tmp_path)
    assert list(mappings) == ["brands", "vehicles"]
    assert mappings["vehicles"].name == "vehicles"


def test_missing_folder(tmp_path: Path) -> None:
    problem = only(tmp_path / "nope")
    assert "does not exist" in problem.message and "BRIDGE_MAPPINGS" in problem.message
    assert problem.file == str(tmp_path / "nope")


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "dir.yaml").mkdir()
    assert "no mapping files" in only(tmp_path).message


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    path = write(tmp_path, "v.yaml", "source:\n  type: vehicles\ntarget: [a\nfields: {}\n")
    problem = only(tmp_path)
    assert problem.file.startswith(f"{path}:")
    assert int(problem.file.rsplit(":", 1)[1]) in (3, 4)
    assert problem.message.startswith("YAML syntax error")


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    path = write(tmp_path, "v.yaml", GOOD + "fields: {}\n")
    problem = only(tmp_path)
    assert problem.file.startswith(f"{path}:")
    assert "duplicate" in problem.message.lower()


def test_top_level_must_be_a_table(tmp_path: Path) -> None:
    write(tmp_path, "v.yaml", "- a\n- b\n")
    assert "expected a table of keys" in only(tmp_path).message


def test_name_key_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "v.yaml", "name: other\n" + GOOD)
    problem = only(tmp_path)
    assert (problem.file, problem.path) == (f"{path}:1", "name")
    assert "named by its file name" in problem.message


def test_unknown_key_names_expected_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "v.yaml", GOOD.replace("  type: vehicles\n", "  type: vehicles\n  filtr: {}\n"))
    problem = only(tmp_path)
    assert (problem.file, problem.path) == (f"{path}:3", "source.filtr")
    assert problem.message == "unknown key 'filtr'; expected one of: custom_object, filter, type"


def test_unknown_top_level_key(tmp_path: Path) -> None:
    write(tmp_path, "v.yaml", GOOD + "schedul: {every: 5m}\n")
    problem = only(tmp_path)
    assert problem.path == "schedul"
    assert "expected one of:" in problem.message and "schedule" in problem.message and "name," not in problem.message


def test_unknown_transform_points_at_the_step(tmp_path: Path) -> None:
    block = "  top_speed_mph:\n    from: speed\n    type: integer\n    transform:\n      - strip\n      - digitz\n"
    path = write(tmp_path, "vehicles.yaml", GOOD.replace(GOOD.splitlines(keepends=True)[-1], block))
    problem = only(tmp_path)
    assert problem.path == "fields.top_speed_mph.transform[1]"
    assert problem.file == f"{path}:13"
    assert problem.message.startswith("unknown transform 'digitz'; expected one of: ")
    assert "digits" in problem.message
    assert str(problem).startswith(f"{path}:13: fields.top_speed_mph.transform[1]: unknown transform")


def test_missing_required_key(tmp_path: Path) -> None:
    write(tmp_path, "v.yaml", "source: {type: vehicles}\nfields: {}\n")
    problem = only(tmp_path)
    assert (problem.path, problem.message) == ("target", "missing required key 'target'")


def test_missing_nested_key(tmp_path: Path) -> None:
    write(tmp_path, "v.yaml", GOOD.replace('  name: "{vehicle_name}"\n', ""))
    assert only(tmp_path).path == "target.name"


def test_wrong_type(tmp_path: Path) -> None:
    write(tmp_path, "v.yaml", GOOD + "on_delete: maybe\n")
    problem = only(tmp_path)
    assert problem.path == "on_delete"
    assert "'keep' or 'delete'" in problem.message and "'maybe'" in problem.message


def test_bad_template(tmp_path: Path) -> None:
    write(tmp_path, "v.yaml", GOOD.replace('"{vehicle_name}"', '"{vehicle_name:>10}"'))
    problem = only(tmp_path)
    assert problem.path == "target.name"
    assert "bad placeholder" in problem.message


def test_mapping_target_must_exist(tmp_path: Path) -> None:
    path = write(tmp_path, "vehicles.yaml", GOOD + "relationships:\n  brand: {from: brand, target: mapping:brandz}\n")
    write(tmp_path, "brands.yaml", BRANDS)
    problem = only(tmp_path)
    assert (problem.file, problem.path) == (f"{path}:10", "relationships.brand.target")
    assert "no mapping named 'brandz'; expected one of: brands, vehicles" in problem.message


def test_duplicate_target_object(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    second = write(tmp_path, "b.yaml", GOOD)
    problem = only(tmp_path)
    assert (problem.file, problem.path) == (f"{second}:4", "target.object")
    assert "'vehicle' is already the target of mapping 'a'" in problem.message


def test_lookup_field_needs_relationship(tmp_path: Path) -> None:
    write(tmp_path, "v.yaml", GOOD + "  owner: {type: lookup}\n")
    problem = only(tmp_path)
    assert problem.path == "fields.owner.type"
    assert "needs a relationships.owner entry" in problem.message


def test_yaml_and_yml_with_the_same_name(tmp_path: Path) -> None:
    write(tmp_path, "v.yaml", GOOD)
    write(tmp_path, "v.yml", BRANDS)
    assert "also defined in" in only(tmp_path).message


def test_bad_file_name(tmp_path: Path) -> None:
    write(tmp_path, "my vehicles.yaml", GOOD)
    assert "bad mapping name" in only(tmp_path).message


def test_every_problem_in_every_file_together(tmp_path: Path) -> None:
    vehicles = write(tmp_path, "vehicles.yaml", """\
source:
  type: vehicles
  filtr: {}
target:
  object: vehicle
  name: "{vehicle_name!r}"
fields:
  top_speed_mph: {from: speed, type: integr, transform: [digitz]}
  owner: {type: lookup}
  "123": x
relationships:
  brand: {from: brand, target: mapping:brandz}
schedule: {every: 5x}
""")
    brands = write(tmp_path, "brands.yaml", BRANDS.replace("fields:", "schedule: {cron: '61 * * * *'}\nfields:"))
    broken = write(tmp_path, "broken.yaml", "source: [\n")
    found = {(p.file, p.path) for p in problems_of(tmp_path)}
    assert found == {
        (f"{vehicles}:3", "source.filtr"),
        (f"{vehicles}:6", "target.name"),
        (f"{vehicles}:8", "fields.top_speed_mph.type"),
        (f"{vehicles}:8", "fields.top_speed_mph.transform[0]"),
        (f"{vehicles}:9", "fields.owner.type"),
        (f"{vehicles}:10", "fields.123"),
        (f"{vehicles}:12", "relationships.brand.target"),
        (f"{vehicles}:13", "schedule.every"),
        (f"{brands}:3", "schedule.cron"),
        next((p.file, "") for p in problems_of(tmp_path) if p.file.startswith(str(broken))),
    }


def test_problems_are_listed_in_the_error_message(tmp_path: Path) -> None:
    write(tmp_path, "v.yaml", GOOD + "on_delete: maybe\nschedule: {every: 5x}\n")
    with pytest.raises(MappingError) as caught:
        load_mappings(tmp_path)
    text = str(caught.value)
    assert "2 problem(s)" in text and "on_delete" in text and "schedule.every" in text


def test_load_mapping_single_file(tmp_path: Path) -> None:
    path = write(tmp_path, "vehicles.yaml", GOOD + "relationships:\n  brand: {from: brand, target: mapping:brands}\n")
    assert load_mapping(path).name == "vehicles"
    assert load_mapping(path, known={"brands"}).depends_on() == {"brands"}
    with pytest.raises(MappingError) as caught:
        load_mapping(path, known={"other"})
    assert [p.path for p in caught.value.problems] == ["relationships.brand.target"]


def test_load_mapping_reports_validation_problems(tmp_path: Path) -> None:
    path = write(tmp_path, "vehicles.yaml", GOOD + "on_delete: maybe\n")
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    assert [p.path for p in caught.value.problems] == ["on_delete"]


def test_unknown_nested_keys_name_what_is_allowed(tmp_path: Path) -> None:
    write(tmp_path, "v.yaml", GOOD + "  a: {from: a, typo: 1}\nrelationships:\n  r: {from: r, target: mapping:v, extra: 1}\n"
          "schedule: {every: 5m, at: 3}\n")
    found = {p.path: p.message for p in problems_of(tmp_path)}
    assert found == {
        "fields.a.typo": "unknown key 'typo'; expected one of: from, options, pattern, required, transform, type",
        "relationships.r.extra": "unknown key 'extra'; expected one of: from, match, target",
        "schedule.at": "unknown key 'at'; expected one of: cron, every",
    }


def test_yaml_keys_that_are_not_text(tmp_path: Path) -> None:
    from bridge.outreach.models import OutreachId, SourceRecord
    from bridge.translate import translate

    write(tmp_path, "v.yaml", GOOD + "  code: {from: code, transform: [{map: {2: two, true: 'yes', null: none}}]}\n")
    mapping = load_mappings(tmp_path)["v"]
    out = [translate(mapping, SourceRecord("vehicles", OutreachId("1"), {"code": v}, {}, None)).fields["code"]
           for v in (2, "2", True, None, "other")]
    assert out == ["two", "two", "yes", "none", "other"]


def test_cross_file_checks_run_on_files_with_other_problems(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    second = write(tmp_path, "b.yaml", GOOD + "on_delete: maybe\n  \nrelationships:\n  x: {from: x, target: mapping:nope}\n")
    found = {(p.file, p.path) for p in problems_of(tmp_path)}
    assert found == {(f"{second}:4", "target.object"), (f"{second}:9", "on_delete"),
                     (f"{second}:12", "relationships.x.target")}


@pytest.mark.parametrize(
    ("line", "key_path", "tag"),
    [
        ("  top_speed: {from: speed, type: integer, transform: !!python/tuple [digits]}\n",
         "fields.top_speed.transform", "!!python/tuple"),
        ("  colors: !foo [a, b]\n", "fields.colors", "!foo"),
        ("  colors: {from: color, transform: [!t [x]]}\n", "fields.colors.transform[0]", "!t"),
        ("  colors: !bar {from: color}\n", "fields.colors", "!bar"),
        ("  colors: !baz color\n", "fields.colors", "!baz"),
    ],
)
def test_tagged_yaml_values_are_mapping_errors(tmp_path: Path, line: str, key_path: str, tag: str) -> None:
    path = write(tmp_path, "v.yaml", GOOD + line)
    problem = only(tmp_path)
    assert (problem.file, problem.path) == (f"{path}:9", key_path)
    assert f"YAML tag {tag!r}" in problem.message


def test_a_core_str_tag_reads_as_text(tmp_path: Path) -> None:
    write(tmp_path, "v.yaml", GOOD + "  code: !!str 12\n")
    assert load_mappings(tmp_path)["v"].fields["code"].from_ == "12"


def test_verify_is_off_by_default_and_every_takes_a_duration(tmp_path: Path) -> None:
    write(tmp_path, "v.yaml", GOOD)
    assert load_mappings(tmp_path)["v"].verify is None
    write(tmp_path, "v.yaml", GOOD + "verify: {every: 1d}\n")
    spec = load_mappings(tmp_path)["v"].verify
    assert spec is not None and spec.seconds() == 86400


def test_verify_problems_have_file_line_and_key_path(tmp_path: Path) -> None:
    path = write(tmp_path, "v.yaml", GOOD + "verify: {every: daily}\n")
    problem = only(tmp_path)
    assert (problem.file, problem.path) == (f"{path}:9", "verify.every")
    assert "'daily' is not a duration" in problem.message
    write(tmp_path, "v.yaml", GOOD + "verify: {every: 1d, repair: true}\n")
    problem = only(tmp_path)
    assert (problem.path, problem.message) == ("verify.repair", "unknown key 'repair'; expected one of: every")
    write(tmp_path, "v.yaml", GOOD + "verify: {}\n")
    assert only(tmp_path).path == "verify.every"
