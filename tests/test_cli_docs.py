"""Every command of the CLI is documented in README.md as ``mim <command>``."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[str]:
    """``rules check``, ``backtest``...: every command and subcommand under ``group``, groups included."""
    found = []
    for name, command in sorted(group.commands.items()):
        if command.hidden:
            continue
        path = (*prefix, name)
        found.append(" ".join(path))
        if isinstance(command, click.Group):
            found += commands(command, path)
    return found


def test_the_cli_has_the_contract_commands() -> None:
    assert {"rules check", "rules test", "backtest"} <= set(commands(main))


@pytest.mark.parametrize("command", commands(main))
def test_command_is_documented_in_readme(command: str) -> None:
    assert README.is_file(), "README.md is missing"
    text = README.read_text(encoding="utf-8")

    assert re.search(rf"\bmim {re.escape(command)}(?![\w-])", text), f"README.md does not mention `mim {command}`"


def test_an_operational_error_is_one_message_with_its_fix_and_exit_code_3(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import cli
    from connector.core.exits import EXIT_ENVIRONMENT, OperationalError

    @cli.main.command("explode-for-test")
    def explode() -> None:
        raise OperationalError("the state file /x/state.db is not a database", "move it away; mim rebuilds it")

    try:
        result = CliRunner().invoke(cli.main, ["explode-for-test"])
    finally:
        cli.main.commands.pop("explode-for-test")
    assert result.exit_code == EXIT_ENVIRONMENT
    assert "Error: the state file /x/state.db is not a database" in result.output
    assert "Fix: move it away; mim rebuilds it" in result.output
    assert "Traceback" not in result.output
