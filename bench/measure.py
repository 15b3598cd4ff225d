"""Measuring one child process: its wall time, CPU and peak RSS alone, and the example mappings
without their relationships (the attribute-only case).

`os.wait4` gives the rusage of that one child, not of every child so far (as
`RUSAGE_CHILDREN` would), so several measured runs in one benchmark do not add up.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class Measured:
    seconds: float  # wall time, process start-up included
    cpu_seconds: float  # user + system
    peak_rss_mb: float
    stdout: str
    stderr: str

    def cpu_us_per(self, records: int) -> float:
        return self.cpu_seconds * 1e6 / records


def run_measured(argv: list[str], env: dict[str, str] | None = None, *, ok: tuple[int, ...] = (0,)) -> Measured:
    """Runs `argv` from the repository; exits the benchmark with its stderr when it exits
    with a code not in `ok`."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.monotonic()
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{stderr[-3000:]}")
    return Measured(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stdout, stderr)


def attribute_only_mappings(folder: Path) -> Path:
    """A copy of the example mappings under `folder` with their relationships removed."""
    import yaml

    target = folder / "mappings"
    target.mkdir(exist_ok=True)
    for path in (REPO / "mappings").glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        doc.pop("relationships", None)
        (target / path.name).write_text(yaml.safe_dump(doc))
    return target


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
