"""Log output: JSON off a terminal, console on one, and never a secret."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from bridge import logs


@pytest.fixture(autouse=True)
def _restore_structlog() -> object:
    yield
    structlog.reset_defaults()


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_lines_off_a_terminal_with_secrets_scrubbed() -> None:
    out = io.StringIO()
    logs.configure(None, "INFO", stream=out)
    structlog.contextvars.bind_contextvars(mapping="vehicles")
    try:
        logs.get_logger("t").info(
            "token_refreshed", refresh_token="r-secret", url="https://u:pw@h/x", page=3
        )
        logs.get_logger("t").debug("hidden_below_level")
    finally:
        structlog.contextvars.clear_contextvars()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["event"] == "token_refreshed" and event["mapping"] == "vehicles" and event["page"] == 3
    assert "r-secret" not in lines[0] and "pw@" not in lines[0]


def test_console_on_a_terminal() -> None:
    out = Tty()
    logs.configure(None, "INFO", stream=out)
    logs.get_logger("t").info("run_finished", written=5)
    text = out.getvalue()
    assert "run_finished" in text and "written" in text
    assert not text.lstrip().startswith("{")
