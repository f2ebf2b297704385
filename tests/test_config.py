"""Configuration from TOML and MIM_* variables: precedence, parsing, TLS and secret handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.core.settings import SettingsError, load_settings


def test_environment_wins_over_the_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "mim.toml"
    path.write_text('platform = "jira"\nstate = "a.sqlite"\n[jira]\nurl = "https://a.atlassian.net"\nproject = "OPS"\n')
    settings = load_settings(path, env={"MIM_STATE": "b.sqlite", "MIM_JIRA_PROJECT": "ITSM"})
    assert settings.platform == "jira"
    assert settings.state == "b.sqlite"
    assert settings.jira.project == "ITSM"
    assert settings.jira.url == "https://a.atlassian.net"


@pytest.mark.parametrize("text, expected", [("false", False), ("0", False), ("true", True), ("/etc/ca.pem", "/etc/ca.pem")],
                         ids=["false", "zero", "true", "ca-bundle"])
def test_verify_from_the_environment_is_a_boolean_or_a_bundle(text: str, expected: object) -> None:
    settings = load_settings(env={"MIM_SERVICENOW_URL": "http://127.0.0.1:9", "MIM_SERVICENOW_VERIFY": text})
    assert settings.servicenow.verify == expected


def test_tls_verification_cannot_be_switched_off_for_a_real_host() -> None:
    with pytest.raises(SettingsError, match="only allowed for 127.0.0.1"):
        load_settings(env={"MIM_JIRA_URL": "https://example.atlassian.net", "MIM_JIRA_VERIFY": "false"})


def test_simulator_and_unknown_variables_do_not_break_the_configuration() -> None:
    settings = load_settings(env={"MIM_SIM_PASSWORD": "x", "MIM_SIM_TOKEN": "y", "MIM_SOMETHING_ELSE": "z",
                                  "MIM_PLATFORM": "ServiceNow"})
    assert settings.platform == "servicenow"


def test_a_misspelt_section_key_is_reported_without_its_value() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(env={"MIM_SERVICENOW_PASSWROD": "hunter2-secret"})
    assert "passwrod" in str(err.value)
    assert "hunter2-secret" not in str(err.value)


def test_secrets_read_from_files_and_never_printed(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("file-secret-123\n")
    settings = load_settings(env={"MIM_SERVICENOW_PASSWORD_FILE": str(secret)})
    assert settings.servicenow.secret().get_secret_value() == "file-secret-123"
    assert "file-secret-123" not in repr(settings) + str(settings.model_dump())


def test_webhook_urls_are_secret() -> None:
    settings = load_settings(env={"MIM_WEBHOOKS_OPS": "https://hooks.example.com/T000/B000/XXXX"})
    assert "XXXX" not in repr(settings)
    assert settings.webhooks["ops"].get_secret_value().endswith("XXXX")


def test_a_missing_secret_file_is_a_clear_error(tmp_path: Path) -> None:
    settings = load_settings(env={"MIM_JIRA_TOKEN_FILE": str(tmp_path / "nope")})
    with pytest.raises(SettingsError, match="cannot read secret file"):
        settings.jira.secret()


def test_invalid_toml_is_reported_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "mim.toml"
    path.write_text("platform = \n")
    with pytest.raises(SettingsError, match="invalid TOML"):
        load_settings(path, env={})
