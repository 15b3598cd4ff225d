"""`bridge --help`, every subcommand's help and `--version`, read as a newcomer reads them."""

from __future__ import annotations

import argparse
import importlib.metadata

import pytest

from bridge import cli
from tests.fixtures_sandbox import REPO


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path (`schema plan`, `backfill`, …) the parser knows."""
    found: list[tuple[str, ...]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((*path, name))
                found.extend(_commands(sub, (*path, name)))
    return found


COMMANDS = _commands(cli._parser())


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as info:
        cli.main([*argv, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def test_top_help_tells_a_user_what_bridge_does_and_where_to_start(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys)
    assert "wire objects" not in text and "map errors to exits" not in text
    assert "Outreach" in text and "Zendesk" in text
    assert "bridge demo" in text and "bridge sandbox" in text  # where a newcomer starts
    assert "exit codes" in text.lower()
    for path in COMMANDS:
        if len(path) == 1:
            assert path[0] in text


def test_there_are_commands_to_check() -> None:
    assert ("backfill",) in COMMANDS and ("schema", "plan") in COMMANDS and ("sandbox",) in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_describes_itself_and_each_option(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    text = _help(capsys, *path)
    parser = cli._parser()
    for name in path:
        parser = next(
            a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
        ).choices[name]
    assert parser.description and len(parser.description) > 40, f"{' '.join(path)} has no description"
    assert parser.description.split()[0] in text
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        assert action.help, f"`bridge {' '.join(path)}` {action.dest} has no help text"


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"bridge {importlib.metadata.version('bridge')}"


def test_the_readme_lists_every_command() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    for path in COMMANDS:
        if len(path) == 1:
            assert f"`bridge {path[0]}" in table, f"bridge {path[0]} is missing from the README's Commands table"
