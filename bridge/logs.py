"""structlog setup: console on a terminal, JSON lines elsewhere, secrets always scrubbed.

Event names are stable snake_case (`page_settled`, `run_finished`); values go in keys.
`mapping`, `run_id` and `page` are bound through contextvars by the pipeline. The redaction
processor runs last before rendering, so nothing reaches the output unscrubbed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from types import ModuleType
from typing import Any, TextIO


def _structlog_without_rich() -> ModuleType:
    """structlog, imported without rich when neither is loaded yet.

    structlog's console renderer imports rich (a sixth of bridge's start-up) to draw
    exceptions, which it never gets here: `format_exc_info` below turns them into text first.
    With rich hidden for that one import, structlog takes its plain fallback; rich stays
    importable for whoever needs it (the terminal progress display)."""
    if "structlog" in sys.modules or "rich" in sys.modules:
        import structlog

        return structlog
    sys.modules["rich"] = None  # type: ignore[assignment]  # `import rich` now fails fast
    try:
        import structlog

        return structlog
    finally:
        del sys.modules["rich"]


structlog = _structlog_without_rich()

from bridge.redact import redact_value  # noqa: E402


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return {key: redact_value(value, key) for key, value in event_dict.items()}


def configure(fmt: str | None = None, level: str = "INFO", stream: TextIO | None = None) -> None:
    """Sets up structlog once for the process; `fmt` None picks console on a tty."""
    out = stream or sys.stderr
    if fmt is None:
        fmt = "console" if out.isatty() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
