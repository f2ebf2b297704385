"""A state file that cannot be used is one message with the fix and exit code 3 in every command that opens it
(`mim sync`, `mim run`, `mim report`, `mim explain`), never a sqlite3 traceback; `mim doctor` names the same
problem and the same fix. One test per way a state file goes wrong (issue 12, item 5)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

import pytest
from click.testing import CliRunner

import cli
from connector.core.exits import EXIT_ENVIRONMENT
from connector.job.store import SCHEMA_VERSION, StateStore
from tests.shipped import servicenow_sim
from tests.test_store import fill
from tests.unprivileged import CliResult, file_modes_ignored, run_cli

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {"sync": ["sync", "--once"], "run": ["run", "--interval", "1s", "--max-cycles", "1"], "report": ["report"],
            "explain": ["explain", "INC00001"]}


@pytest.fixture(scope="module")
def platform_url() -> Iterator[str]:
    sim = servicenow_sim(user="errs", password="errs-secret-pw")
    server = sim.server().start()
    yield server.url
    server.stop()


def _env(url: str, state: Path) -> dict[str, str]:
    return {"MIM_PLATFORM": "servicenow", "MIM_SERVICENOW_URL": url, "MIM_SERVICENOW_USERNAME": "errs",
            "MIM_SERVICENOW_PASSWORD": "errs-secret-pw", "MIM_STATE": str(state)}


def _clean_env(monkeypatch: pytest.MonkeyPatch, url: str, state: Path) -> None:
    for name in [n for n in os.environ if n.startswith("MIM_")]:
        monkeypatch.delenv(name)
    for name, value in _env(url, state).items():
        monkeypatch.setenv(name, value)


def _a_real_state(path: Path) -> Path:
    with StateStore(path, "servicenow") as store:
        fill(store)
        for i in range(200):  # pages enough that a cut loses some
            store.set_counter(f"padding-{i}", "x" * 300)
    return path


def _truncated(tmp: Path) -> Path:
    path = _a_real_state(tmp / "state.sqlite")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def _random_bytes(tmp: Path) -> Path:
    path = tmp / "state.sqlite"
    path.write_bytes(os.urandom(16384))
    return path


def _a_text_file(tmp: Path) -> Path:
    path = tmp / "state.sqlite"
    path.write_text("platform = \"servicenow\"\n" * 50)
    return path


def _a_directory(tmp: Path) -> Path:
    path = tmp / "state.sqlite"
    path.mkdir()
    return path


def _a_newer_schema(tmp: Path) -> Path:
    path = _a_real_state(tmp / "state.sqlite")
    with StateStore(path, "servicenow") as store:
        store.db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 5,))
    return path


CASES: dict[str, tuple[Callable[[Path], Path], str, str]] = {
    # case: (make the state, words of the problem, words of the fix)
    "truncated": (_truncated, "is not a usable mim state", "move it aside"),
    "random bytes": (_random_bytes, "is not a usable mim state (file is not a database", "move it aside"),
    "a text file": (_a_text_file, "is not a usable mim state (file is not a database", "point it at the state file"),
    "a directory": (_a_directory, "points at a directory", "point MIM_STATE at a file"),
    "a newer schema": (_a_newer_schema, f"state schema {SCHEMA_VERSION + 5}", "run the newer mim again"),
}


def _problem_and_fix(output: str) -> tuple[str, str]:
    lines = output.splitlines()
    problem = next(line for line in lines if line.startswith("Error: "))[len("Error: "):]
    fix = next(line for line in lines if line.startswith("Fix: "))[len("Fix: "):]
    return problem, fix


def _doctor_state_line(output: str) -> tuple[str, str]:
    lines = output.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("FAIL state store: "))
    return lines[index][len("FAIL state store: "):], lines[index + 1].strip()[len("fix: "):]


@pytest.mark.parametrize("case", list(CASES))
def test_a_broken_state_file_is_one_message_with_the_fix_in_every_command_and_in_doctor(
        case: str, tmp_path: Path, platform_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make, problem_words, fix_words = CASES[case]
    state = make(tmp_path)
    _clean_env(monkeypatch, platform_url, state)
    seen = set()
    for name, argv in COMMANDS.items():
        result = CliRunner().invoke(cli.main, argv)
        assert result.exit_code == EXIT_ENVIRONMENT, f"mim {name}: {result.output}{result.exception!r}"
        assert "Traceback" not in result.output and "sqlite3." not in result.output
        problem, fix = _problem_and_fix(result.output)
        assert problem_words in problem and fix_words in fix, f"mim {name}: {result.output}"
        seen.add((problem, fix))
    assert len(seen) == 1, f"every command says the same: {seen}"
    doctor = CliRunner().invoke(cli.main, ["doctor"])
    assert doctor.exit_code == 1 and "Traceback" not in doctor.output
    assert _doctor_state_line(doctor.output) == seen.pop(), "doctor gives the same problem and the same fix"


def test_a_state_held_by_another_run_is_exit_3_with_the_holder_and_doctor_shows_who_holds_it(
        tmp_path: Path, platform_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    state = _a_real_state(tmp_path / "state.sqlite")
    _clean_env(monkeypatch, platform_url, state)
    with StateStore(state, "servicenow") as running:
        running.acquire_lock()
        result = CliRunner().invoke(cli.main, COMMANDS["sync"])
        doctor = CliRunner().invoke(cli.main, ["doctor"])
    assert result.exit_code == EXIT_ENVIRONMENT and "Traceback" not in result.output
    problem, fix = _problem_and_fix(result.output)
    assert f"pid {os.getpid()}" in problem and "in use by another mim process" in problem
    assert "wait for the other run to finish" in fix
    assert f"ok   state store: {state} (SQLite, schema {SCHEMA_VERSION}) is writable; runner lock held by pid " \
           f"{os.getpid()}" in doctor.output.replace("ok  state", "ok   state")


# -- read-only: as root, the checks run in a process without the capability to override file permissions ------

def _run_commands(state: Path, url: str) -> dict[str, CliResult]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIM_")}
    env.update(_env(url, state))
    return run_cli({**COMMANDS, "doctor": ["doctor"]}, env, cwd=ROOT)


@pytest.mark.parametrize("where", ["file", "folder"])
def test_a_read_only_state_file_or_folder_is_one_message_with_the_fix(where: str, tmp_path: Path,
                                                                     platform_url: str) -> None:
    if reason := file_modes_ignored():
        pytest.skip(f"{reason}: root writes read-only files")
    folder = tmp_path / "mim"
    folder.mkdir()
    state = _a_real_state(folder / "state.sqlite")
    target = state if where == "file" else folder
    for extra in (Path(str(state) + "-wal"), Path(str(state) + "-shm")):
        extra.unlink(missing_ok=True)
    target.chmod(0o444 if where == "file" else 0o555)
    try:
        results = _run_commands(state, platform_url)
    finally:
        target.chmod(0o644 if where == "file" else 0o755)
    seen = set()
    for name, done in results.items():
        assert "Traceback" not in done.output, f"mim {name}: {done.output}"
        if name == "doctor":
            assert done.code == 1, done.output
            seen.add(_doctor_state_line(done.output))
            continue
        assert done.code == EXIT_ENVIRONMENT, f"mim {name}: {done.output}"
        problem, fix = _problem_and_fix(done.output)
        assert ("is read-only" if where == "file" else f"the folder {folder} is read-only") in problem, done.output
        assert f"write access to {state} and its folder {folder}" in fix
        seen.add((problem, fix))
    assert len(seen) == 1, f"every command and doctor say the same: {seen}"
