"""How `bridge backfill --dry-run --diff` prints a preview: bounded text, or JSON Lines."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from bridge import cli
from bridge.commands.preview import JsonLines, TextReport
from bridge.pipeline import diff
from bridge.pipeline.diff import Action, FieldChange, RecordDiff, Tally


def _updates(n: int) -> list[RecordDiff]:
    return [RecordDiff("vehicles", str(i), f"outreach:vehicles:{i}", Action.UPDATE, f"z{i}",
                       (FieldChange("color", "red", f"c{i}"),)) for i in range(n)]  # fmt: skip


def _run(report: TextReport | JsonLines, records: list[RecordDiff]) -> None:
    tally = Tally("vehicles")
    for record in records:
        tally.add(record)
        report.record(record)
    report.mapping_done(tally)
    report.finish()


def test_text_shows_the_first_updates_field_by_field_then_how_many_more_then_the_table() -> None:
    out = io.StringIO()
    dead = RecordDiff("vehicles", "99", None, Action.DEAD_LETTER, error="field 'speed': not a number")
    same = RecordDiff("vehicles", "98", "outreach:vehicles:98", Action.UNCHANGED)
    _run(TextReport(out, limit=3), [*_updates(5), dead, same])
    lines = out.getvalue().splitlines()
    assert lines[:6] == [
        "vehicles update 0 outreach:vehicles:0 (Zendesk z0):", '    color: "red" → "c0"',
        "vehicles update 1 outreach:vehicles:1 (Zendesk z1):", '    color: "red" → "c1"',
        "vehicles update 2 outreach:vehicles:2 (Zendesk z2):", '    color: "red" → "c2"',
    ]
    assert lines[6] == "vehicles dead-letter 99: field 'speed': not a number"
    assert lines[7] == "vehicles: … and 2 more updates (--limit 3; --json lists every record)"
    assert lines[8].split() == ["mapping", "read", "create", "update", "unchanged", "dead-letter"]
    assert lines[9].split() == ["vehicles", "7", "0", "5", "1", "1"]
    assert lines[10].startswith("Nothing was written.")


def test_text_says_when_the_previous_payload_was_not_kept_and_shows_unresolved_lookups() -> None:
    out = io.StringIO()
    old = RecordDiff("vehicles", "1", "outreach:vehicles:1", Action.UPDATE, "z1", previous_kept=False)
    link = RecordDiff("vehicles", "2", "outreach:vehicles:2", Action.UPDATE, None,
                      (FieldChange("brand", "77", diff.WOULD_PARK),))
    _run(TextReport(out, limit=20), [old, link])
    text = out.getvalue()
    assert "vehicles update 1 outreach:vehicles:1 (Zendesk z1): changed (previous payload not kept)" in text
    assert '    brand: "77" → (unresolved: would park)' in text


def test_json_lines_list_every_record_then_the_summary() -> None:
    out = io.StringIO()
    _run(JsonLines(out), _updates(30))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["type"] for line in lines] == ["record"] * 30 + ["summary"]
    assert lines[0]["changes"] == [{"field": "color", "from": "red", "to": "c0", "unresolved": None}]
    assert lines[-1] == {"type": "summary", "mapping": "vehicles", "read": 30, "create": 0, "update": 30,
                         "unchanged": 0, "dead_letter": 0}


@pytest.fixture
def _logging_restored() -> Iterator[None]:
    """cli.main points structlog at this test's captured stderr; later tests must not log there."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.mark.parametrize(("argv", "says"), [
    (["backfill", "--diff"], "--diff previews a dry run and writes nothing: add --dry-run"),
    (["backfill", "--json"], "--json and --limit shape the output of --diff"),
    (["backfill", "--dry-run", "--limit", "5"], "--json and --limit shape the output of --diff"),
    (["backfill", "--dry-run", "--diff", "--limit", "-1"], "--limit -1: expected 0 or more"),
])  # fmt: skip
@pytest.mark.usefixtures("_logging_restored")
def test_diff_flags_without_a_dry_run_are_refused_before_anything_runs(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file
    monkeypatch.setenv("DATABASE_URL", "postgresql://bridge@127.0.0.1:9/bridge")  # never reached
    assert cli.main(argv) == 2
    assert says in capsys.readouterr().err


def test_an_update_whose_sent_values_are_all_the_same_says_why_it_is_listed() -> None:
    out = io.StringIO()
    _run(TextReport(out, limit=5), [RecordDiff("vehicles", "3", "outreach:vehicles:3", Action.UPDATE, "z3")])
    assert "vehicles update 3 outreach:vehicles:3 (Zendesk z3): changed, yet no value sent differs" in out.getvalue()


def test_limit_zero_prints_only_the_table() -> None:
    out = io.StringIO()
    _run(TextReport(out, limit=0), _updates(4))
    lines = out.getvalue().splitlines()
    assert lines[0] == "vehicles: … and 4 more updates (--limit 0; --json lists every record)"
    assert lines[1].split()[0] == "mapping" and lines[2].split()[:4] == ["vehicles", "4", "0", "4"]
