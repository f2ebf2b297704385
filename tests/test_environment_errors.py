"""The environment the job runs in (TLS, files and folders outside the state store): one clear message with its
fix and exit code 3, never a traceback; and the loopback exception to TLS means this machine, parsed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

import cli
from connector.core.exits import EXIT_ENVIRONMENT
from connector.core.settings import SettingsError, is_loopback, load_settings
from connector.platforms.jira.client import JiraClient
from tests.shipped import servicenow_sim
from tests.unprivileged import file_modes_ignored, run_cli


@pytest.fixture()
def servicenow() -> Iterator[str]:
    sim = servicenow_sim(user="env", password="env-password-123")
    server = sim.server().start()
    yield server.url
    server.stop()


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [n for n in os.environ if n.startswith("MIM_") or n in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MIM_STATE", str(tmp_path / "state.sqlite"))


def _servicenow(monkeypatch: pytest.MonkeyPatch, url: str, **values: str) -> None:
    monkeypatch.setenv("MIM_PLATFORM", "servicenow")
    monkeypatch.setenv("MIM_SERVICENOW_URL", url)
    monkeypatch.setenv("MIM_SERVICENOW_USERNAME", "env")
    monkeypatch.setenv("MIM_SERVICENOW_PASSWORD", "env-password-123")
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stdout, result.stderr


# -- loopback --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "loopback"), [
    ("http://127.0.0.1:8080", True), ("http://127.8.9.10", True), ("http://[::1]:9000", True),
    ("http://localhost:8080/", True), ("http://LOCALHOST", True),
    ("http://127.attacker.invalid", False), ("http://127.0.0.1.nip.io", False), ("http://localhost.evil.com", False),
    ("http://128.0.0.1", False), ("http://[::2]", False), ("http://127.1", False), ("http://[::ffff:127.0.0.1]", False),
    ("http://user@127.0.0.1@evil.com", False), ("not a url", False),
])
def test_loopback_is_an_address_in_127_0_0_0_8_or_colon_colon_1_or_localhost(url: str, loopback: bool) -> None:
    assert is_loopback(url) is loopback


def test_a_name_starting_with_127_passes_neither_the_plain_http_nor_the_verify_false_guard() -> None:
    with pytest.raises(SettingsError, match="plain http:// is only allowed for 127.0.0.1/localhost"):
        load_settings(env={"MIM_SERVICENOW_URL": "http://127.attacker.invalid"})
    with pytest.raises(SettingsError, match="verify = false is only allowed"):
        load_settings(env={"MIM_JIRA_URL": "https://127.attacker.invalid", "MIM_JIRA_VERIFY": "false"})
    with pytest.raises(SettingsError, match="must use https"):
        JiraClient("http://127.attacker.invalid", "a@example.com", "token")
    assert load_settings(env={"MIM_JIRA_URL": "http://127.0.0.1:9", "MIM_JIRA_VERIFY": "false"}).jira.verify is False


# -- the CA bundle ---------------------------------------------------------------------------------------------


def test_a_missing_ca_bundle_stops_sync_with_the_fix_and_exit_3(servicenow: str, monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    _servicenow(monkeypatch, servicenow, MIM_SERVICENOW_VERIFY=str(tmp_path / "corp-ca.pem"))

    code, out, err = run("sync", "--once")

    assert code == EXIT_ENVIRONMENT
    assert err.splitlines() == [
        f"Error: CA bundle {tmp_path / 'corp-ca.pem'} (servicenow.verify (MIM_SERVICENOW_VERIFY)) does not exist",
        "Fix: set servicenow.verify (MIM_SERVICENOW_VERIFY) to the path of a PEM file of CA certificates "
        "(or true for the system's)"]
    assert "Traceback" not in out + err


def test_doctor_gives_the_same_fix_for_the_ca_bundle(servicenow: str, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    _servicenow(monkeypatch, servicenow, MIM_SERVICENOW_VERIFY=str(tmp_path / "corp-ca.pem"))

    code, out, _ = run("doctor")

    assert code == 1
    assert f"FAIL environment: CA bundle {tmp_path / 'corp-ca.pem'}" in out
    assert "fix: set servicenow.verify (MIM_SERVICENOW_VERIFY) to the path of a PEM file" in out


def test_a_ca_bundle_without_certificates_is_named(servicenow: str, monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate\n")
    _servicenow(monkeypatch, servicenow, MIM_SERVICENOW_VERIFY=str(bundle))

    code, _, err = run("sync", "--once")

    assert code == EXIT_ENVIRONMENT
    assert err.startswith(f"Error: CA bundle {bundle} (servicenow.verify (MIM_SERVICENOW_VERIFY)) holds no readable certificate")


def test_requests_ca_bundle_pointing_nowhere_is_named(servicenow: str, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    _servicenow(monkeypatch, servicenow.replace("http://", "https://"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "gone.pem"))

    code, _, err = run("sync", "--once")

    assert code == EXIT_ENVIRONMENT
    assert err.splitlines() == [
        f"Error: CA bundle {tmp_path / 'gone.pem'} (the environment variable REQUESTS_CA_BUNDLE) does not exist",
        "Fix: unset REQUESTS_CA_BUNDLE or correct it"]


# -- files and folders outside the state store ------------------------------------------------------------------


def test_a_configuration_file_that_is_a_folder_is_an_environment_error(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    (tmp_path / "conf.toml").mkdir()
    monkeypatch.setenv("MIM_CONFIG", str(tmp_path / "conf.toml"))

    code, _, err = run("rules", "check")

    assert code == EXIT_ENVIRONMENT
    assert err.splitlines() == [f"Error: configuration file {tmp_path / 'conf.toml'}: {tmp_path / 'conf.toml'} is a folder, "
                                "not a file", "Fix: give the path of a file"]


def test_an_html_report_into_a_missing_folder_is_an_environment_error(servicenow: str, monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    _servicenow(monkeypatch, servicenow)
    assert run("sync", "--once")[0] == 0
    target = tmp_path / "no-such-folder" / "report.html"

    code, _, err = run("report", "--html", str(target))

    assert code == EXIT_ENVIRONMENT
    assert err.splitlines() == [f"Error: {target} does not exist",
                                "Fix: create it, or correct the path in the command or setting"]


def run_bound_by_file_modes(*args: str) -> tuple[int, str, str]:
    """``run`` in a child process that file modes bind (as root too: see ``tests/unprivileged.py``), in this
    folder and environment; skips the test where root cannot give up its override."""
    if reason := file_modes_ignored():
        pytest.skip(f"{reason}: root reads and lists whatever the mode")
    result = run_cli({"mim": list(args)}, dict(os.environ), cwd=Path.cwd())["mim"]
    assert "Traceback" not in result.output, result.output
    return result.code, result.stdout, result.stderr


def test_a_secret_file_mim_may_not_read_is_an_environment_error(servicenow: str, monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("env-password-123")
    secret.chmod(0)
    _servicenow(monkeypatch, servicenow, MIM_SERVICENOW_PASSWORD_FILE=str(secret))
    monkeypatch.delenv("MIM_SERVICENOW_PASSWORD")

    code, _, err = run_bound_by_file_modes("sync", "--once")

    assert code == EXIT_ENVIRONMENT
    assert err.startswith(f"Error: cannot read secret file {secret} (servicenow.password_file): permission denied")


def test_a_secret_file_that_is_a_folder_is_an_environment_error(servicenow: str, monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    (tmp_path / "password").mkdir()
    _servicenow(monkeypatch, servicenow, MIM_SERVICENOW_PASSWORD_FILE=str(tmp_path / "password"))
    monkeypatch.delenv("MIM_SERVICENOW_PASSWORD")

    code, _, err = run("sync", "--once")

    assert code == EXIT_ENVIRONMENT
    assert err.splitlines()[0] == (f"Error: cannot read secret file {tmp_path / 'password'} (servicenow.password_file): "
                                   f"{tmp_path / 'password'} is a folder, not a file")


def test_a_rules_folder_mim_may_not_list_is_an_environment_error(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    rules.chmod(0)
    try:
        code, _, err = run_bound_by_file_modes("rules", "check")
    finally:
        rules.chmod(0o755)

    assert code == EXIT_ENVIRONMENT
    assert err.startswith("Error: permission denied: rules")


@pytest.mark.parametrize(("error", "problem", "fix"), [
    (PermissionError(13, "Permission denied", "/var/lib/mim"), "permission denied: /var/lib/mim", "chmod/chown"),
    (OSError(30, "Read-only file system", "/srv/report.html"), "/srv/report.html is on a read-only file system",
     "writable location"),
    (OSError(28, "No space left on device", "/var/lib/mim/x"), "no space left to write /var/lib/mim/x", "free disk space"),
    (FileNotFoundError(2, "No such file or directory", "/etc/mim/rules"), "/etc/mim/rules does not exist", "create it"),
])
def test_a_file_problem_is_one_message_with_its_fix(error: OSError, problem: str, fix: str) -> None:
    from connector.core.exits import file_problem

    found = file_problem(error)

    assert found.problem == problem and fix in found.fix and found.exit_code == EXIT_ENVIRONMENT
