"""Preview benchmark: `bridge backfill --dry-run --diff` beside the plain `--dry-run`, same listing.

It seeds the sandbox (its own process) with N vehicles, uses the attribute-only mapping on a
fresh database, and runs, each as its own measured child process:
- `dry-run`: `bridge backfill vehicles --full --dry-run` (translate and count);
- `diff-creates`: `--dry-run --diff --json` on an empty id map (every record a create, every
  value listed);
- then it stores an id-map row for every record with a stale hash and a payload of no fields,
  and runs `diff-updates` (`--json`: every record an update, every field a change) and
  `diff-text` (the terminal report: 20 updates shown, the rest counted).
Per case: wall seconds, records/s, CPU µs per record and peak RSS, which must not grow with N
(the preview streams). Figures are printed, never asserted.

    .venv/bin/python bench/preview.py                         # 100,000 records
    .venv/bin/python bench/preview.py --records 10000 --records 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.harness import bridge, bridge_env, fresh_database, sandbox_process, server_dsn  # noqa: E402
from bench.measure import Measured, attribute_only_mappings, run_measured  # noqa: E402

MAPPING = "vehicles"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, action="append")
    parser.add_argument("--page-size", type=int, default=1000)
    args = parser.parse_args()
    server = server_dsn()
    print(f"{'case':>13} {'records':>8} {'seconds':>8} {'rec/s':>8} {'cpu µs/rec':>10} {'peak RSS MB':>11}")
    for records in sorted(args.records or [100_000]):
        for case, measured in scenario(server, records, args.page_size):
            print(f"{case:>13} {records:>8} {measured.seconds:>8.1f} {records / measured.seconds:>8.0f} "
                  f"{measured.cpu_us_per(records):>10.1f} {measured.peak_rss_mb:>11.1f}", flush=True)  # fmt: skip


def scenario(server: str, records: int, page_size: int) -> list[tuple[str, Measured]]:
    rows: list[tuple[str, Measured]] = []
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(
        Path(tmp) / "sandbox.json", "--vehicles", str(records), "--brands", "20", "--prospects", "50",
    ) as info:  # fmt: skip
        dsn = fresh_database(server, "bridge_bench_preview")
        env = bridge_env(info, dsn, attribute_only_mappings(Path(tmp)), BRIDGE_PAGE_SIZE=str(page_size))
        bridge(["migrate"], env)
        base = ["backfill", MAPPING, "--full", "--dry-run"]
        rows.append(("dry-run", _bridge([*base], env)))
        creates = _bridge([*base, "--diff", "--json"], env)
        rows.append(("diff-creates", creates))
        asyncio.run(_stale_rows(dsn, [json.loads(line) for line in creates.stdout.splitlines()]))
        rows.append(("diff-updates", _bridge([*base, "--diff", "--json"], env)))
        rows.append(("diff-text", _bridge([*base, "--diff"], env)))
    return rows


def _bridge(args: list[str], env: dict[str, str]) -> Measured:
    return run_measured([sys.executable, "-m", "bridge", *args], env)


async def _stale_rows(dsn: str, lines: list[dict[str, Any]]) -> None:
    """An id-map row for every record read, as if written long ago with other values."""
    import asyncpg

    from bridge.store import idmap, pool

    conn = await asyncpg.connect(pool.normalise_dsn(dsn))
    try:
        stale = idmap.pack_payload("old", {})
        rows = [idmap.IdMapRow(r["source_id"], f"z{r['source_id']}", r["external_id"], "stale", stale)
                for r in lines if r["type"] == "record"]  # fmt: skip
        await idmap.upsert_many(conn, MAPPING, rows)
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
