"""Configuration in one place: only the top of the package reads the environment or Settings.

`settings.py` reads the environment, `wiring.py` turns Settings into options and clients, and
the commands (`cli.py`, `commands/`, `demo.py`) hand Settings to wiring. Everything below gets
small typed options, so it can be tested and reused without an environment.
"""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "bridge"
READS_ENVIRONMENT = re.compile(r"os\.environ|getenv|Settings\(|BaseSettings")
IMPORTS_SETTINGS = re.compile(r"^\s*from bridge(\.settings)? import .*\b(Settings|settings)\b|^\s*import bridge\.settings",
                              re.MULTILINE)  # fmt: skip
ENV_READERS = {"settings.py", "wiring.py", "cli.py"}
SETTINGS_READERS = {"settings.py", "wiring.py", "cli.py", "demo.py", "demo_live.py", "commands/"}


def _modules() -> list[tuple[str, str]]:
    return [(str(p.relative_to(PACKAGE)), p.read_text(encoding="utf-8")) for p in sorted(PACKAGE.rglob("*.py"))]


def _allowed(name: str, allowed: set[str]) -> bool:
    return any(name == a or (a.endswith("/") and name.startswith(a)) for a in allowed)


def test_only_settings_wiring_and_cli_read_the_environment() -> None:
    offenders = [
        f"{name}:{text[: m.start()].count(chr(10)) + 1}: {m.group(0)}"
        for name, text in _modules() if not _allowed(name, ENV_READERS)
        for m in READS_ENVIRONMENT.finditer(text)
    ]  # fmt: skip
    assert not offenders, "read the environment through Settings and wiring.py instead:\n" + "\n".join(offenders)


def test_below_the_commands_nothing_sees_settings() -> None:
    offenders = [name for name, text in _modules()
                 if not _allowed(name, SETTINGS_READERS) and IMPORTS_SETTINGS.search(text)]  # fmt: skip
    assert not offenders, f"these modules take Settings; give them options built in wiring.py: {offenders}"
