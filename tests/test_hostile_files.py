"""Hostile configuration files: whatever a rule, process or mapping file holds, ``mim rules check`` answers with
located ``file:line:col`` errors, within the loader's limits, and a file it passes never breaks a later stage."""

from __future__ import annotations

import re
import resource
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from connector.core.yamlfile import MAX_BYTES, MAX_DEPTH, MAX_VALUES, load_yaml
from connector.detection.engine import decide
from connector.detection.rules import OPERATORS, load_rules
from connector.process.processfile import load_process
from tests.config_fuzz import START, _storm_tickets

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): (?P<message>.+)$")


pytestmark = pytest.mark.usefixtures("isolated")  # no MIM_* variable or mim.toml of the developer's shell


def check(path: Path) -> tuple[int, list[tuple[int, int, str]], str]:
    """``mim rules check PATH``: exit code, the located errors as ``(line, col, message)``, the output. Any
    exception other than the exit is a failure of the test (a traceback for the user)."""
    result = CliRunner().invoke(main, ["rules", "check", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output + repr(result.exception)
    errors = [(int(m["line"]), int(m["col"]), m["message"]) for m in map(LINE.match, result.stdout.splitlines()) if m]
    return result.exit_code, errors, result.stdout


def rule_file(tmp_path: Path, body: str, name: str = "r.yaml") -> Path:
    path = tmp_path / "rules" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("version: 1\nrules:\n  - id: r\n" + body, encoding="utf-8")
    return path


# -- the loader ------------------------------------------------------------------------------------------------


def test_a_control_character_is_a_located_error_not_a_reader_traceback(tmp_path: Path) -> None:
    path = rule_file(tmp_path, "    description: bell\x07here\n    when: {priority: 1}\n    declare: {parent: self}\n")

    code, errors, _ = check(path)

    assert code == 1
    assert errors == [(4, 22, "control character U+0007 is not allowed (only tab, line breaks and printable characters)")]


def billion_laughs(levels: int, fan: int) -> str:
    lines = ["version: 1", 'a0: &a0 ["lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fan)}]" for i in range(1, levels + 1)]
    return "\n".join(lines + [f"rules: *a{levels}"]) + "\n"


def test_an_alias_bomb_stops_at_the_expansion_limit_in_little_time_and_memory(tmp_path: Path) -> None:
    path = tmp_path / "rules" / "bomb.yaml"
    path.parent.mkdir()
    path.write_text(billion_laughs(9, 9), encoding="utf-8")  # 524 bytes, 9**9 = 387 million values expanded
    assert path.stat().st_size < 600
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()

    code, errors, _ = check(path)

    assert time.monotonic() - started < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB: under 100 MiB
    assert code == 1
    assert len(errors) == 1 and f"more than {MAX_VALUES:,} keys and values once aliases are expanded" in errors[0][2]


def test_aliases_within_the_limit_still_work(tmp_path: Path) -> None:
    path = tmp_path / "rules" / "shared.yaml"
    path.parent.mkdir()
    path.write_text("version: 1\nrules:\n  - id: a\n    when: &open {state: {in: [new, in_progress]}, priority: 1}\n"
                    "    declare: {parent: self}\n  - id: b\n    when: *open\n    declare: {parent: self}\n", encoding="utf-8")

    assert check(path)[0] == 0
    assert [r.id for r in load_rules([path]).rules] == ["a", "b"]


@pytest.mark.parametrize("text", [
    pytest.param("version: 1\nrules: " + "[" * 5000 + "]" * 5000 + "\n", id="flow"),
    pytest.param("version: 1\nrules:\n" + "".join("  " * (i + 1) + "-\n" for i in range(400)), id="block"),
])
def test_deep_nesting_is_a_located_error_not_a_recursion_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "rules" / "deep.yaml"
    path.parent.mkdir()
    path.write_text(text, encoding="utf-8")

    code, errors, _ = check(path)

    assert code == 1
    assert len(errors) == 1 and f"nesting deeper than {MAX_DEPTH} levels" in errors[0][2]


def test_a_recursive_alias_is_a_located_error(tmp_path: Path) -> None:
    path = tmp_path / "rules" / "loop.yaml"
    path.parent.mkdir()
    path.write_text("version: 1\nrules: &r\n  - *r\n", encoding="utf-8")

    code, errors, _ = check(path)

    assert code == 1
    assert (3, 5, "alias *r refers to a value that contains it (recursive alias)") in errors


@pytest.mark.parametrize(("value", "message"), [
    pytest.param("!!python/object/apply:os.system [echo]", "tag !!python/object/apply:os.system is not supported", id="python"),
    pytest.param("!!binary aGVsbG8=", "tag !!binary is not supported", id="binary"),
    pytest.param("!custom x", "tag !custom is not supported", id="custom"),
    pytest.param("!!set {a, b}", "tag !!set is not supported", id="set"),
    pytest.param("!!int abc", "cannot read 'abc' as an integer", id="bad-int"),
    pytest.param("!!timestamp someday", "cannot read 'someday' as a date or time: not valid", id="bad-timestamp"),
])
def test_tags_and_unreadable_values_are_located_errors_not_constructor_tracebacks(tmp_path: Path, value: str,
                                                                                  message: str) -> None:
    path = rule_file(tmp_path, f"    description: {value}\n    when: {{priority: 1}}\n    declare: {{parent: self}}\n")

    code, errors, _ = check(path)

    assert code == 1
    assert [(line, col) for line, col, _ in errors] == [(4, 18)]
    assert message in errors[0][2]


def test_an_impossible_date_is_located_in_the_process_file(tmp_path: Path) -> None:
    path = tmp_path / "rules" / "process.yaml"
    path.parent.mkdir()
    path.write_text("version: 1\nbusiness_hours:\n  holidays: [2026-12-24, 2026-02-30]\n", encoding="utf-8")

    code, errors, _ = check(path)

    assert code == 1
    assert errors == [(3, 26, "cannot read '2026-02-30' as a date or time: day is out of range for month")]


def test_a_file_over_the_size_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "rules" / "huge.yaml"
    path.parent.mkdir()
    path.write_bytes(b"version: 1\nrules: []\n" + b"#" * MAX_BYTES)

    code, errors, _ = check(path)

    assert code == 1
    assert errors == [(1, 1, f"file is larger than {MAX_BYTES // 1024} KiB (the limit for configuration files)")]


def test_bytes_that_are_not_utf8_are_located(tmp_path: Path) -> None:
    path = tmp_path / "rules" / "latin.yaml"
    path.parent.mkdir()
    path.write_bytes(b"version: 1\nrules:\n  - id: r\n    description: caf\xe9\n")

    code, errors, _ = check(path)

    assert code == 1
    assert errors == [(4, 21, "not UTF-8: byte 0xe9 cannot be decoded")]


def test_a_second_document_and_merge_keys_are_located(tmp_path: Path) -> None:
    path = tmp_path / "rules" / "two.yaml"
    path.parent.mkdir()
    path.write_text("version: 1\nbase: &b {priority: 1}\nrules:\n  - id: r\n    when: {<<: *b}\n---\nversion: 2\n",
                    encoding="utf-8")

    located, errors = load_yaml(path)

    assert located is not None
    assert [(e.line, e.col, e.message) for e in errors] == [
        (5, 12, "merge keys (<<) are not supported"),
        (6, 1, "a configuration file holds one YAML document; found a second one")]


# -- complete validation at load -------------------------------------------------------------------------------


def test_a_list_inside_a_membership_list_is_refused_at_load_not_at_every_sync(tmp_path: Path) -> None:
    path = rule_file(tmp_path, "    when: {service: [x, [y]]}\n    declare: {parent: self}\n")

    code, errors, _ = check(path)

    assert code == 1
    assert errors == [(4, 25, "rules.0.when.service.1: service values are single values, not a list")]


@pytest.mark.parametrize("when", ["{service: {in: [x, {a: 1}]}}", "{service: {eq: [x]}}", "{priority: {in: [1, [2]]}}",
                                  "{state: {not_in: [new, [closed]]}}", "{service: {ne: {a: b}}}"])
def test_no_value_that_passes_rules_check_breaks_the_engine(tmp_path: Path, when: str) -> None:
    path = rule_file(tmp_path, f"    when: {when}\n    declare: {{parent: self}}\n")

    code, _, output = check(path)
    ruleset = load_rules([path])

    assert code == 1, output
    assert ruleset.errors and not ruleset.rules


def test_every_loaded_rule_runs_through_the_engine(tmp_path: Path) -> None:
    path = rule_file(tmp_path, "    when: {service: [web-shop, '404'], priority: {in: [1, 2, 3]}, title: {matches: 'fail'}}\n"
                               "    declare: {parent: self}\n")
    ruleset = load_rules([path])
    assert not ruleset.errors

    decisions = decide(_storm_tickets(), [], ruleset.rules, START + timedelta(minutes=20))

    assert decisions.declarations


def test_an_unknown_operator_does_not_hide_the_other_errors_of_its_when(tmp_path: Path) -> None:
    path = rule_file(tmp_path, "    when: {priority: {less_than: 3}, state: {in: [bogus]}, ci: {lt: 3}, title: {matches: '('}}\n"
                               "    declare: {parent: self}\n")

    code, errors, _ = check(path)

    assert code == 1
    assert [(line, col) for line, col, _ in errors] == [(4, 23), (4, 51), (4, 64), (4, 90)]
    assert errors[0][2] == f"rules.0.when.priority.less_than: unknown operator 'less_than' (operators: {', '.join(OPERATORS)})"
    assert "'bogus' is not a valid state" in errors[1][2]
    assert "lt compare numbers" in errors[2][2]
    assert "invalid regular expression" in errors[3][2]


def test_an_unknown_key_lists_the_keys_that_are_known(tmp_path: Path) -> None:
    path = rule_file(tmp_path, "    surge: {group_by: [service], window: 15m, threshold: 5, windw: 3}\n")

    code, errors, _ = check(path)

    assert code == 1
    assert errors == [(4, 61, "unknown key 'windw' (expected one of: group_by, window, threshold, distinct, baseline)")]


@pytest.mark.parametrize("window", ["99999999999999999999w", "3000000w", "367d", "9" * 400 + "s"])
def test_a_duration_beyond_a_year_is_a_located_error_not_an_overflow(tmp_path: Path, window: str) -> None:
    path = rule_file(tmp_path, f"    surge: {{group_by: [service], window: {window}, threshold: 5}}\n")

    code, errors, _ = check(path)

    assert code == 1
    assert len(errors) == 1 and errors[0][:2] == (4, 42)
    assert "is longer than the limit of 366d" in errors[0][2]


@pytest.mark.parametrize(("body", "fragment"), [
    pytest.param("    surge: {group_by: [service], window: 15m, threshold: 100001}\n", "less than or equal to 100000",
                 id="threshold"),
    pytest.param("    order: 99999999999999999999\n    when: {priority: 1}\n    declare: {parent: self}\n",
                 "less than or equal to 1000000", id="order"),
    pytest.param("    when: {service: 404}\n    declare: {parent: self}\n", "quote it: '404'", id="number-for-text"),
    pytest.param("    when: {priority: 1}\n    declare: {parent: self, set: {assignment_group: [a]}}\n",
                 "assignment_group must be a name", id="list-for-a-group"),
])
def test_numbers_and_types_are_bounded_at_load(tmp_path: Path, body: str, fragment: str) -> None:
    code, errors, output = check(rule_file(tmp_path, body))

    assert code == 1, output
    assert len(errors) == 1 and fragment in errors[0][2]


@pytest.mark.parametrize(("body", "line", "fragment"), [
    pytest.param("business_hours:\n  start: 25:00\n", 3, "not a time of day", id="sexagesimal-hour"),
    pytest.param("business_hours:\n  end: 12:30:45\n", 3, "not a time of day", id="sexagesimal-seconds"),
    pytest.param("business_hours:\n  country: XX\n", 3, "no public holidays known for country='XX'", id="country"),
    pytest.param("business_hours:\n  days: []\n", 3, "at least one working day", id="no-working-day"),
    pytest.param("costs:\n  default_per_hour: .inf\n", 3, "finite number", id="infinite-cost"),
    pytest.param("costs:\n  per_service: {web: .nan}\n", 3, "finite number", id="nan-cost"),
    pytest.param("communications:\n  update_every: 0s\n", 3, "longer than 0s", id="zero-update-cadence"),
    pytest.param("managers:\n  on_call: [{days: [sun], start: '00:00', end: '23:59', person: ''}]\n", 3, "must not be empty",
                 id="empty-on-call-person"),
    pytest.param("team: {group: ' '}\n", 2, "must not be empty", id="blank-team-group"),
])
def test_process_values_the_planner_would_fail_on_are_refused_at_load(tmp_path: Path, body: str, line: int,
                                                                      fragment: str) -> None:
    path = tmp_path / "rules" / "process.yaml"
    path.parent.mkdir()
    path.write_text("version: 1\n" + body, encoding="utf-8")

    code, errors, output = check(path)

    assert code == 1, output
    assert len(errors) == 1 and errors[0][0] == line and fragment in errors[0][2], errors
    assert load_process(path)[0] is None


@pytest.mark.parametrize(("body", "fragment"), [
    pytest.param("url: '{base}/{key!r}'\n", "url", id="url-conversion"),
    pytest.param("url: '{base}/{sys_id}'\n", "unknown name 'sys_id'", id="url-unknown-name"),
    pytest.param("url: '{base}/x}'\n", "url", id="url-single-brace"),
    pytest.param("values:\n  state: {'1': {a: b}}\n", "which is not a valid state", id="value-map-to-a-mapping"),
    pytest.param("values:\n  service: {a: [b]}\n", "must map to text", id="value-map-to-a-list"),
    pytest.param("times: {formats: ['%Y-%Q']}\n", "cannot be used", id="bad-time-format"),
    pytest.param("export: {delimiter: ';;'}\n", "at most 1 character", id="long-delimiter"),
    pytest.param("export: {encoding: klingon}\n", "unknown text encoding 'klingon'", id="unknown-encoding"),
])
def test_mapping_values_a_reader_would_fail_on_are_refused_at_load(tmp_path: Path, body: str, fragment: str) -> None:
    path = tmp_path / "mappings" / "servicenow.yaml"
    path.parent.mkdir()
    path.write_text("version: 1\nplatform: servicenow\nfields: {id: sys_id, key: number, opened_at: opened_at}\n" + body,
                    encoding="utf-8")

    code, errors, output = check(path)

    assert code == 1, output
    assert len(errors) == 1 and fragment in errors[0][2], errors


def test_a_naive_time_in_a_rule_test_is_utc(tmp_path: Path) -> None:
    path = tmp_path / "rules" / "tests" / "naive.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("version: 1\ncases:\n  - name: naive now\n    now: 2026-03-02T10:30:00\n"
                    "    tickets: [{id: t1, opened_at: 2026-03-02T10:00:00Z, priority: 1, state: new, service: a}]\n"
                    "    expect: {major_incidents: [{parent: t1, rule: p1-critical}]}\n", encoding="utf-8")
    (tmp_path / "rules" / "default.yaml").write_text((ROOT / "rules" / "default.yaml").read_text(), encoding="utf-8")

    result = CliRunner().invoke(main, ["rules", "test", "--rules", str(tmp_path / "rules"), str(path)])

    assert result.exit_code == 0, result.output
    assert datetime(2026, 3, 2, 10, 30, tzinfo=timezone.utc)  # the case ran against an aware clock


# -- which files `mim rules check` reads -------------------------------------------------------------------------


def test_rules_check_without_arguments_checks_the_rules_in_the_current_directory(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    text = (ROOT / "rules" / "default.yaml").read_text(encoding="utf-8").replace("threshold: 8", "threshold: 0", 1)
    assert "threshold: 0" in text  # the shipped rules still have a surge threshold to break
    (rules / "default.yaml").write_text(text, encoding="utf-8")

    result = CliRunner().invoke(main, ["rules", "check"])

    assert result.exit_code == 1, result.output
    assert result.stdout.startswith("rules/default.yaml:"), result.output
    assert "surge.threshold: Input should be greater than or equal to 1" in result.stdout
    assert "read 3 files: rules/default.yaml, " in result.stderr  # and the shipped mappings it checked against


def test_rules_check_says_which_files_it_read(tmp_path: Path) -> None:
    for name in ("rules", "mappings"):
        (tmp_path / name).mkdir()
    (tmp_path / "rules" / "default.yaml").write_text((ROOT / "rules" / "default.yaml").read_text(), encoding="utf-8")
    (tmp_path / "mappings" / "jira.yaml").write_text((ROOT / "mappings" / "jira.yaml").read_text(), encoding="utf-8")

    result = CliRunner().invoke(main, ["rules", "check"])

    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == "read 2 files: rules/default.yaml, mappings/jira.yaml"


def test_the_job_runs_the_rules_that_rules_check_checked(tmp_path: Path) -> None:
    from connector.core.settings import default_dir, load_settings

    assert load_settings(env={}).rules_path() == default_dir("rules")
    (tmp_path / "rules").mkdir()
    (tmp_path / "mappings").mkdir()

    settings = load_settings(env={})

    assert settings.rules_path() == Path("rules") and settings.mappings_path() == Path("mappings")
    assert load_settings(env={"MIM_RULES": "/etc/mim/rules"}).rules_path() == Path("/etc/mim/rules")
