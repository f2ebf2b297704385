"""The ``write:`` section of each mapping is typed per platform: a misspelt key or a wrong type is a located
error of ``mim rules check``, and every default lives in the model."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from connector.core.mapping import load_mapping
from connector.core.ticket import State
from connector.core.write_settings import CanonicalState, JiraWrite, ServiceNowWrite
from connector.core.yamlfile import ConfigFileError

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): (?P<message>.+)$")


pytestmark = pytest.mark.usefixtures("isolated")  # no MIM_* variable or mim.toml of the developer's shell


def copy_with(tmp_path: Path, platform: str, old: str, new: str) -> Path:
    """A copy of the shipped mapping of ``platform`` (in a directory of its own) with one line changed."""
    text = (ROOT / "mappings" / f"{platform}.yaml").read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path = tmp_path / "mappings" / f"{platform}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def position(path: Path, needle: str) -> tuple[int, int]:
    """1-based line and column of the first ``needle`` in ``path``."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            return number, line.index(needle) + 1
    raise AssertionError(needle)


def rules_check(path: Path) -> tuple[int, list[tuple[str, int, int, str]], str]:
    result = CliRunner().invoke(main, ["rules", "check", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    errors = [(m["path"], int(m["line"]), int(m["col"]), m["message"])
              for m in map(LINE.match, result.stdout.splitlines()) if m]
    return result.exit_code, errors, result.stdout


def test_shipped_mappings_check_ok(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    code, errors, stdout = rules_check(tmp_path / "mappings")
    assert (code, errors) == (0, []), stdout
    assert "ok: 2 mapping files" in stdout


def test_a_misspelt_write_key_is_an_error_at_its_key(tmp_path: Path) -> None:
    path = copy_with(tmp_path, "jira", "  page_size: 100\n", "  page_sise: 100\n")

    code, errors, stdout = rules_check(tmp_path / "mappings")

    assert code == 1, stdout
    assert len(errors) == 1, stdout
    assert errors[0][:3] == (str(path), *position(path, "page_sise"))
    assert "unknown key 'page_sise' (expected one of: " in errors[0][3] and "page_size" in errors[0][3]


def test_a_write_value_of_the_wrong_type_is_an_error_at_its_value(tmp_path: Path) -> None:
    path = copy_with(tmp_path, "jira", "  page_size: 100\n", '  page_size: "many"\n')

    code, errors, stdout = rules_check(tmp_path / "mappings")

    assert code == 1, stdout
    assert len(errors) == 1, stdout
    assert errors[0][:3] == (str(path), *position(path, '"many"'))
    assert "write.page_size" in errors[0][3] and "integer" in errors[0][3]


@pytest.mark.parametrize(("old", "new", "point", "fragment"), [
    pytest.param("  batch_size: 50\n", "  batch_size: 0\n", "0", "greater than or equal to 1", id="batch-size-0"),
    pytest.param("  overlap: 60s\n", "  overlap: 60\n", "60", "needs a unit", id="overlap-without-unit"),
    pytest.param('"4": canceled}', '"4": cancelled}', "cancelled", "'canceled'", id="change-state-misspelt"),
    pytest.param("  batch: true\n", "  batch: sometimes\n", "sometimes", "boolean", id="batch-not-a-boolean"),
    pytest.param("  batch: true\n", "  batch: true\n  link_type: Relates\n", "link_type", "unknown key 'link_type'",
                 id="a-jira-key-in-servicenow"),
])
def test_servicenow_write_mistakes_are_located(tmp_path: Path, old: str, new: str, point: str, fragment: str) -> None:
    path = copy_with(tmp_path, "servicenow", old, new)
    changed = new.strip().splitlines()[-1]

    code, errors, stdout = rules_check(path)

    assert code == 1, stdout
    assert len(errors) == 1, stdout
    line, col = position(path, changed)
    assert errors[0][1:3] == (line, col + changed.index(point))
    assert fragment in errors[0][3]


def test_every_mistake_of_the_section_is_reported_at_once(tmp_path: Path) -> None:
    path = copy_with(tmp_path, "jira", "  page_size: 100\n  overlap: 2m\n", "  page_sise: 100\n  overlap: soon\n")
    code, errors, stdout = rules_check(path)
    assert code == 1
    assert [e[1] for e in errors] == [position(path, "page_sise")[0], position(path, "soon")[0]]


def test_job_start_refuses_a_misspelt_write_key(tmp_path: Path) -> None:
    from connector.core.settings import Settings
    from connector.job.assembly import load_config_files

    copy_with(tmp_path, "jira", "  page_size: 100\n", "  page_sise: 100\n")
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    settings = Settings(platform="jira", rules=str(tmp_path / "rules"), mappings=str(tmp_path / "mappings"))
    with pytest.raises(ConfigFileError, match="page_sise"):
        load_config_files(settings)


def test_defaults_live_in_the_model() -> None:
    assert ServiceNowWrite().page_size == 500 and JiraWrite().page_size == 100
    assert ServiceNowWrite().overlap == timedelta(seconds=2) and JiraWrite().overlap == timedelta(minutes=2)
    assert ServiceNowWrite().discovery_ttl == JiraWrite().discovery_ttl == timedelta(hours=1)
    assert ServiceNowWrite().batch is True and ServiceNowWrite().batch_size == 50


def test_servicenow_defaults_that_follow_the_mapping_fields(tmp_path: Path) -> None:
    text = (ROOT / "mappings" / "servicenow.yaml").read_text(encoding="utf-8")
    for line in ("  stage_field: u_mim_stage\n", "  parent_field: parent_incident\n", "  change_link_field: rfc\n",
                 '  resolved_state: "6"\n'):
        text = text.replace(line, "")
    text = (text.replace("  parent: parent_incident\n", "  parent: u_parent_mi\n")
            .replace("  stage: u_mim_stage\n", "  stage: u_stage\n").replace("  change: rfc\n", "  change: u_change\n")
            .replace('"6": resolved', '"16": resolved'))
    path = tmp_path / "servicenow.yaml"
    path.write_text(text, encoding="utf-8")

    mapping, errors = load_mapping(path)

    assert mapping is not None, errors
    write = mapping.write
    assert isinstance(write, ServiceNowWrite)
    assert (write.stage_field, write.parent_field, write.change_link_field, write.resolved_state) == (
        "u_stage", "u_parent_mi", "u_change", "16")


def test_shipped_values_are_read_as_typed_settings() -> None:
    servicenow, _ = load_mapping(ROOT / "mappings" / "servicenow.yaml")
    jira, _ = load_mapping(ROOT / "mappings" / "jira.yaml")
    assert servicenow is not None and jira is not None
    assert isinstance(servicenow.write, ServiceNowWrite) and isinstance(jira.write, JiraWrite)
    assert servicenow.write.overlap == timedelta(seconds=60) and servicenow.write.resolved_state == "6"
    assert servicenow.write.priority_via[1] == {"impact": 1, "urgency": 1}
    assert servicenow.write.change_states["-1"] == "in_progress"
    assert jira.write.discovery_ttl == timedelta(hours=1) and jira.write.internal_comments is True


def test_canonical_states_in_write_settings_are_the_ticket_states() -> None:
    assert set(CanonicalState.__args__) == {s.value for s in State}  # type: ignore[attr-defined]
