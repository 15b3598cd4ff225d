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
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.harness import bridge, bridge_env, fresh_database, sandbox_process, server_dsn  # noqa: E402
from bench.measure import Measured, attribute_only_mappings  # noqa: E402

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
        rows.append(("dry-run", _quiet(base, env)))
        rows.append(("diff-creates", _quiet([*base, "--diff", "--json"], env)))
        # In a child of its own: a parent grown by 100,000 lines would lend its size to the
        # peak RSS of every child it starts later (ru_maxrss survives exec).
        subprocess.run([sys.executable, __file__, "--stale-rows", dsn], env=env, check=True, cwd=REPO)
        rows.append(("diff-updates", _quiet([*base, "--diff", "--json"], env)))
        rows.append(("diff-text", _quiet([*base, "--diff"], env)))
    return rows


def _quiet(args: list[str], env: dict[str, str]) -> Measured:
    """`bridge args` measured alone, its output thrown away (a pipe read here would grow this
    process, and through it the children started after)."""
    with tempfile.TemporaryFile("w+") as err:
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "bridge", *args], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        err.seek(0)
        if os.waitstatus_to_exitcode(status) not in (0, 1):
            raise SystemExit(f"bridge {' '.join(args)} failed:\n{err.read()[-3000:]}")
    return Measured(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, "", "")


async def _stale_rows(dsn: str) -> None:
    """An id-map row for every record a preview reads, as if written long ago with other
    values; the records come from a preview's JSON Lines, read as they stream."""
    import asyncpg

    from bridge.store import idmap, pool

    stale = idmap.pack_payload("old", {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "backfill", MAPPING, "--full", "--dry-run", "--diff", "--json",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, limit=2**20,
    )  # fmt: skip
    assert proc.stdout is not None
    conn = await asyncpg.connect(pool.normalise_dsn(dsn))
    try:
        batch: list[idmap.IdMapRow] = []
        async for line in proc.stdout:
            r = json.loads(line)
            if r["type"] == "record":
                batch.append(idmap.IdMapRow(r["source_id"], f"z{r['source_id']}", r["external_id"], "stale", stale))
            if len(batch) == 1000:
                await idmap.upsert_many(conn, MAPPING, batch)
                batch = []
        await idmap.upsert_many(conn, MAPPING, batch)
    finally:
        await conn.close()
        await proc.wait()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--stale-rows"]:
        asyncio.run(_stale_rows(sys.argv[2]))
    else:
        main()
