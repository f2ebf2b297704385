"""Deployment recipes stay in step with the CLI: every command they run exists and parses."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import cli

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _parses(argv: list[str]) -> None:
    result = CliRunner().invoke(cli.main, [*argv, "--help"])
    assert result.exit_code == 0, f"mim {' '.join(argv)}: {result.output}"


def _mim_args(command: str) -> list[str]:
    words = shlex.split(command)
    index = next(i for i, w in enumerate(words) if w.endswith("/mim") or w == "mim")
    args = words[index + 1:]
    return [a for a in args if not a.startswith(">")][: args.index(">>") if ">>" in args else None]


def test_kubernetes_cronjob_forbids_concurrent_runs_and_runs_a_real_command() -> None:
    spec = yaml.safe_load((DEPLOY / "cronjob.yaml").read_text())
    assert spec["kind"] == "CronJob"
    assert spec["spec"]["concurrencyPolicy"] == "Forbid"
    container = spec["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    _parses(container["args"])
    env = {e["name"]: e for e in container["env"]}
    assert "valueFrom" in env["MIM_SERVICENOW_PASSWORD"], "the password must come from a Secret"


@pytest.mark.parametrize("unit", ["mim.service", "mim-run.service"])
def test_systemd_units_run_real_commands(unit: str) -> None:
    text = (DEPLOY / unit).read_text()
    exec_start = re.search(r"^ExecStart=(.+)$", text, re.M)
    assert exec_start
    _parses(_mim_args(exec_start.group(1)))
    assert "EnvironmentFile=" in text and "PASSWORD" not in exec_start.group(1)


def test_timer_triggers_the_oneshot_service() -> None:
    assert "OnUnitInactiveSec=" in (DEPLOY / "mim.timer").read_text()
    assert "Type=oneshot" in (DEPLOY / "mim.service").read_text()


def test_crontab_line_runs_sync_once() -> None:
    line = next(l for l in (DEPLOY / "crontab").read_text().splitlines() if l and not l.startswith("#"))
    command = line.split(None, 6)[6]
    mim_part = command[command.index("/usr/local/bin/mim"):].split(">>")[0]
    _parses(_mim_args(mim_part))


def test_container_image_copies_what_the_package_needs() -> None:
    root = DEPLOY.parent
    for line in (DEPLOY / "Containerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (root / source).exists(), source
    assert 'ENTRYPOINT ["mim"]' in (DEPLOY / "Containerfile").read_text()
