"""`bridge verify MAPPING [--repair] [--json]`: Zendesk against what bridge wrote (pipeline/verify.py).

Exit codes, as for every command (DESIGN.md): 0 Zendesk agrees with what bridge wrote (or
`--repair` rewrote every difference it can: edited and deleted records); 1 differences
remain (found and not repaired, unknown records, which are never deleted, and stale id-map
rows); 2 unknown mapping or bad configuration; 3 fatal (a rerun resumes from the cursor).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

from bridge import wiring
from bridge.commands.common import EXIT_DEAD_LETTERS, EXIT_OK, leased, select
from bridge.mapping.load import load_mappings
from bridge.pipeline.verify import VerifyReport, repair, save_report, verify_mapping
from bridge.settings import Settings

SHOW = 10  # items of each kind printed on a terminal; --json has them all


async def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    mappings = load_mappings(settings.bridge_mappings)
    name = select(mappings, [args.mapping])[0]
    mapping = mappings[name]
    options = wiring.verify_options(settings, wiring.actor(settings))
    # A repair writes, so it holds the mapping's lease like every writer; a report only reads.
    async with leased(settings, "verify", [name], enabled=args.repair) as (services, held):
        report = await verify_mapping(mapping, services, options)
        if args.repair:
            await held(name, repair(mapping, services, report, options))
        await save_report(services, report)
    print(json.dumps(report.as_dict(), indent=2) if args.json else summary(report))
    return EXIT_OK if report.left == 0 else EXIT_DEAD_LETTERS


def summary(report: VerifyReport, show: int = SHOW) -> str:
    """The report for a person: counts, then the first `show` items of each kind."""
    read = (f"read {report.records_read} record(s) in {report.pages} page(s) of the "
            f"{'incremental export' if report.source == 'export' else 'record listing'}")  # fmt: skip
    head = {"clean": "Zendesk matches what bridge wrote", "incomplete": "incomplete"}.get(
        report.status, f"{report.found} difference(s) in Zendesk"
    )
    lines = [f"{report.mapping}: {head} ({read})"]
    _section(lines, "edited by hand", report.edited, show, lambda e: (
        f"{e.external_id} (Zendesk {e.zendesk_id}, Outreach {e.source_id}): "
        + "; ".join(f"{d.field}: wrote {d.written!r}, Zendesk has {d.zendesk!r}" for d in e.differences)
    ))  # fmt: skip
    _section(lines, "deleted by hand", report.deleted, show,
             lambda a: f"{a.external_id} (Zendesk {a.zendesk_id}, Outreach {a.source_id})")
    _section(lines, "unknown to bridge (never deleted)", report.unknown, show,
             lambda u: f"{u[1]} (Zendesk {u[0]})")
    _section(lines, "id-map rows of records gone from Outreach whose Zendesk record no longer exists",
             report.stale, show, lambda a: f"{a.external_id} (Zendesk {a.zendesk_id}, Outreach {a.source_id})")
    if report.repaired is not None:
        lines.append(f"  repaired: rewrote {len(report.repaired)} record(s) from Outreach's current version")
        _section(lines, "not repaired", sorted(report.not_repaired.items()), show, lambda i: f"{i[0]}: {i[1]}")
    elif report.edited or report.deleted:
        lines.append("  run with --repair to rewrite the edited and deleted records from Outreach")
    lines.extend(f"  note: {note}" for note in report.notes)
    return "\n".join(lines)


def _section(lines: list[str], title: str, items: Sequence[Any], show: int, line: Callable[[Any], str]) -> None:
    if not items:
        return
    lines.append(f"  {title}: {len(items)}")
    lines.extend(f"    {line(item)}" for item in items[:show])
    if len(items) > show:
        lines.append(f"    … and {len(items) - show} more (--json lists them all)")
