"""Extraction benchmark: `bridge backfill --dry-run` against a bare aiohttp loop, same listing.

For each record count it starts the seeded sandbox in its own process, then runs, each as its
own child process so that its CPU is measured alone:
- `bench/bare_loop.py`: GET, `json.loads`, follow `links.next`, nothing else (the floor);
- `bridge backfill vehicles --dry-run` with the attribute-only mapping, on a fresh database
  (translates every record and compares hashes; writes nothing).
Both read the same URL (the one bridge builds) at the same page size. It prints, per case,
records/s (whole process, and the loop or run alone, without start-up), the ratio of the
dry run's to the bare loop's, CPU µs per record (whole process), peak RSS, and the sandbox's
CPU share (near 100% means the sandbox, not the client, set the pace). Figures are printed,
never asserted. With `--repeat N` both run N times, alternately, and each figure is the
median (the machine may be shared). With two or more record counts it also prints the dry
run's marginal CPU per record (the slope between the smallest and the largest count) and
its fixed start-up CPU (imports, connections), which weighs on small runs.

    .venv/bin/python bench/extraction.py                     # 100,000 records, 0 ms
    .venv/bin/python bench/extraction.py --records 10000 --records 100000 --latency-ms 50
    .venv/bin/python bench/extraction.py --records 20000 --profile /tmp/dry.prof   # cProfile

`--profile FILE` runs the dry run under cProfile, writes the stats to FILE and prints the
top of them (the CPU figure then includes the profiler's overhead).

Both processes start from bytecode, as installed code does: the bare loop's aiohttp was
compiled when pip installed it, and `pip install` (the Docker image, Heroku) compiles bridge
too, but an editable checkout under PYTHONDONTWRITEBYTECODE (as here) never gets its .pyc
files, so every start of bridge would compile its ~150 modules again and the loop's would
not. `--bytecode compiled` (the default) compiles bridge first; `--bytecode source` removes
bridge's compiled files and so measures that unequal start (as figures before it did).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import pstats
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.harness import bridge, bridge_env, sandbox_process, scratch_database, server_dsn  # noqa: E402
from bench.measure import Measured, attribute_only_mappings, cpu_seconds, run_measured  # noqa: E402

MAPPING = "vehicles"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, action="append")
    parser.add_argument("--latency-ms", type=float, action="append")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each case; figures are medians")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile the dry run into this file")
    parser.add_argument("--bytecode", choices=("compiled", "source"), default="compiled",
                        help="start bridge from compiled bytecode, as installed (default), or from source")
    args = parser.parse_args()
    _bytecode(args.bytecode == "compiled")
    print(f"bridge starts from {'bytecode' if args.bytecode == 'compiled' else 'source (no .pyc)'}")
    server = server_dsn()
    print(f"{'case':>8} {'records':>8} {'latency':>8} {'rec/s':>8} {'loop rec/s':>10} {'× bare':>7} "
          f"{'cpu µs/rec':>10} {'peak RSS MB':>11} {'sandbox CPU':>11}")  # fmt: skip
    for latency in args.latency_ms or [0.0]:
        cpu: dict[int, float] = {}
        for records in sorted(args.records or [100_000]):
            for row in scenario(server, records, latency, args.page_size, args.profile, args.repeat):
                print(f"{row['case']:>8} {records:>8} {latency:>6.0f}ms {row['rate']:>8.0f} {row['loop_rate']:>10.0f} "
                      f"{row['ratio']:>7.2f} {row['cpu_us']:>10.1f} {row['rss_mb']:>11.1f} "
                      f"{row['sandbox_cpu_pct']:>10.0f}%", flush=True)  # fmt: skip
                if row["case"] == "dry-run":
                    cpu[records] = row["cpu_us"] * records / 1e6
        if len(cpu) > 1:
            low, high = min(cpu), max(cpu)
            slope = (cpu[high] - cpu[low]) / (high - low)
            print(f"dry run at {latency:.0f}ms: {slope * 1e6:.1f} µs CPU per record beyond a start-up of "
                  f"{cpu[low] - slope * low:.2f} s CPU")
    if args.profile is not None:
        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(30)


def _bytecode(compiled: bool) -> None:
    """Compiles bridge's modules, as `pip install` does, or removes their compiled files."""
    package = REPO / "bridge"
    if compiled:
        compileall.compile_dir(package, quiet=1)
        return
    sys.dont_write_bytecode = True  # neither this process nor its children write them again
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    for cache in list(package.rglob("__pycache__")):
        shutil.rmtree(cache)


def scenario(
    server: str, records: int, latency_ms: float, page_size: int, profile: Path | None, repeat: int = 1
) -> list[dict[str, Any]]:
    """The bare loop's row and the dry run's, each the median of `repeat` alternate runs."""
    bare_rows, dry_rows = [], []
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(
        Path(tmp) / "sandbox.json", "--vehicles", str(records), "--brands", "20", "--prospects", "50",
        "--latency-ms", str(latency_ms),
    ) as info, scratch_database(server, "bridge_bench_extract") as dsn:  # fmt: skip
        env = bridge_env(info, dsn, attribute_only_mappings(Path(tmp)), BRIDGE_PAGE_SIZE=str(page_size))
        bridge(["migrate"], env)
        url = _listing_url(info["outreach_url"], page_size)
        bare_argv = [sys.executable, "bench/bare_loop.py", url, info["outreach_token"]]
        for _ in range(repeat):
            bare = _timed(info, lambda: run_measured(bare_argv))
            bare_rows.append(_row("bare", bare, records, json.loads(bare[0].stdout)["seconds"]))
            dry = _timed(info, lambda: _dry_run(env, profile))
            dry_rows.append(_row("dry-run", dry, records, _run_seconds(dry[0].stderr)))
    bare_row, dry_row = _median(bare_rows), _median(dry_rows)
    bare_row["ratio"] = 1.0
    dry_row["ratio"] = dry_row["rate"] / bare_row["rate"]
    return [bare_row, dry_row]


def _median(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: rows[0][key] if key == "case" else statistics.median(r[key] for r in rows) for key in rows[0]}


def _listing_url(outreach_url: str, page_size: int) -> str:
    """The first page's URL as bridge builds it for the attribute-only vehicles mapping."""
    from bridge.outreach.client import OutreachClient, OutreachConfig

    client = OutreachClient(None, OutreachConfig(outreach_url, page_size))  # type: ignore[arg-type]
    return client.list_url(MAPPING, custom_object=True)


def _dry_run(env: dict[str, str], profile: Path | None) -> Measured:
    runner = [sys.executable] + (["-m", "cProfile", "-o", str(profile)] if profile else []) + ["-m", "bridge"]
    return run_measured([*runner, "backfill", MAPPING, "--dry-run"],
                        {**env, "LOG_LEVEL": "INFO", "LOG_FORMAT": "json"})  # fmt: skip


def _timed(info: dict[str, Any], run: Any) -> tuple[Measured, float]:
    """The measured run and the sandbox's CPU seconds spent meanwhile."""
    before = cpu_seconds(info["pid"])
    measured = run()
    return measured, cpu_seconds(info["pid"]) - before


def _row(case: str, timed: tuple[Measured, float], records: int, inner_seconds: float) -> dict[str, Any]:
    measured, sandbox_cpu = timed
    return {
        "case": case,
        "rate": records / measured.seconds,
        "loop_rate": records / inner_seconds,
        "cpu_us": measured.cpu_us_per(records),
        "rss_mb": measured.peak_rss_mb,
        "sandbox_cpu_pct": 100 * sandbox_cpu / measured.seconds,
    }


def _run_seconds(stderr: str) -> float:
    """The dry run's own duration from its `run_finished` log line (no process start-up)."""
    for line in stderr.splitlines():
        if '"run_finished"' in line:
            event = json.loads(line)
            if event.get("mapping") == MAPPING:
                return float(event["seconds"])
    raise SystemExit("no run_finished line in the dry run's log")


if __name__ == "__main__":
    main()
