"""`bridge status --check`: is every mapping healthy? For schedulers (cron, Heroku Scheduler,
a Kubernetes CronJob) that only read an exit code and a few lines of text.

A mapping is unhealthy when its latest sync run failed, when it has more dead letters than
`max_dead_letters`, when its lag (seconds since the end of its last successful run) is over
`max_lag_seconds`, or when it has never synced successfully. Pure: it judges the rows
`status.collect` read.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.status import MappingStatus


@dataclass(frozen=True, slots=True)
class StatusThresholds:
    max_dead_letters: int = 0
    max_lag_seconds: float = 3600.0


def problems(rows: list[MappingStatus], limits: StatusThresholds) -> list[str]:
    """One line per reason a mapping is unhealthy (empty: all healthy)."""
    found: list[str] = []
    for row in rows:
        name = row.mapping
        if row.last_run_status == "failed":
            found.append(f"{name}: its last run failed (started {row.last_run_started}); see `bridge status` "
                         "and the run_failed log line")  # fmt: skip
        if row.dead_letters > limits.max_dead_letters:
            found.append(f"{name}: {row.dead_letters} dead letters, more than {limits.max_dead_letters}; "
                         f"see `bridge dead-letters list --mapping {name}`")  # fmt: skip
        if row.lag_seconds is None:
            if row.last_run_status != "failed":
                found.append(f"{name}: never synced successfully; run `bridge backfill {name}` or start the worker")
        elif row.lag_seconds > limits.max_lag_seconds:
            found.append(f"{name}: lag {row.lag_seconds:.0f}s, over {limits.max_lag_seconds:.0f}s since its last "
                         "successful run; is the worker running?")  # fmt: skip
    return found
