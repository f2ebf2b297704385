"""Rule, process and mapping files: every mistake is reported at ``file:line:col``, all files at once."""

from __future__ import annotations

import re
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from connector.core.durations import format_duration, parse_duration

LINE = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): (?P<message>.+)$")


pytestmark = pytest.mark.usefixtures("isolated")  # no MIM_* variable or mim.toml of the developer's shell


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def rules_check(*paths: Path, env: dict[str, str] | None = None) -> tuple[int, list[tuple[str, int, int, str]], str]:
    """Run ``mim rules check`` and parse its ``file:line:col: message`` lines."""
    result = CliRunner().invoke(main, ["rules", "check", *map(str, paths)], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    errors = []
    for line in result.stdout.splitlines():
        match = LINE.match(line)
        if match:
            errors.append((match["path"], int(match["line"]), int(match["col"]), match["message"]))
    return result.exit_code, errors, result.stdout


FOUR_MISTAKES = """
version: 1
rules:
  - id: service-surge
    descripton: five callers on one service
    surge:
      group_by: [service]
      window: 15
      threshold: 0
    late_children: 4h
    late_children: 2h
"""


def test_four_mistakes_in_one_rule_file_give_four_located_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "rules" / "surge.yaml", FOUR_MISTAKES)

    code, errors, stdout = rules_check(tmp_path / "rules")

    assert code == 1
    assert [(p, line, col) for p, line, col, _ in errors] == [
        (str(path), 4, 5),    # descripton
        (str(path), 7, 15),   # window: 15
        (str(path), 8, 18),   # threshold: 0
        (str(path), 10, 5),   # second late_children
    ]
    messages = [m for *_, m in errors]
    assert "unknown key 'descripton'" in messages[0]
    assert "needs a unit" in messages[1] and "15m" in messages[1]
    assert "threshold" in messages[2] and "greater than or equal to 1" in messages[2]
    assert "duplicate key 'late_children' (first defined at line 9)" in messages[3]
    assert stdout.count("\n") == 4, "nothing but the four error lines on stdout"


def test_errors_of_two_broken_files_are_reported_together(tmp_path: Path) -> None:
    first = write(tmp_path / "rules" / "a.yaml", """
        version: 1
        rules:
          - id: a
            surge: {group_by: [service], window: 10, threshold: 3}
        """)
    second = write(tmp_path / "rules" / "b.yaml", """
        version: 1
        rules:
          - id: b
            when: {priority: 1}
            declare: {parent: oldest}
        """)

    code, errors, _ = rules_check(tmp_path / "rules")

    assert code == 1
    assert [(p, line) for p, line, _, _ in errors] == [(str(first), 4), (str(second), 5)]


# the wording is libyaml's when PyYAML has it (it parses ten times faster), else PyYAML's own
@pytest.mark.parametrize(("text", "line", "col", "fragments"), [
    pytest.param("version: 1\nrules:\n  - id: a\n   description: bad indent\n", 4, 4,
                 ("did not find expected '-' indicator", "expected <block end>"), id="bad-indentation"),
    pytest.param("version: 1\nrules:\n  - id: a\n\tdescription: tab\n", 4, 1,
                 ("tab character that violates indentation", "'\\t' that cannot start any token"), id="tab-character"),
])
def test_yaml_syntax_error_is_located(tmp_path: Path, text: str, line: int, col: int, fragments: tuple[str, str]) -> None:
    path = tmp_path / "rules" / "broken.yaml"
    path.parent.mkdir()
    path.write_text(text, encoding="utf-8")

    code, errors, _ = rules_check(path)

    assert code == 1
    assert [(p, ln, c) for p, ln, c, _ in errors] == [(str(path), line, col)]
    assert "YAML syntax error" in errors[0][3] and any(fragment in errors[0][3] for fragment in fragments)


RULE_HEAD = "version: 1\nrules:\n  - id: r\n"


@pytest.mark.parametrize(("body", "line", "col", "fragment"), [
    pytest.param("    when:\n      priority: 1\n      colour: red\n    declare: {parent: self}\n",
                 6, 7, "unknown canonical field 'colour'", id="unknown-field-in-when"),
    pytest.param("    surge: {group_by: [service, servce], window: 15m, threshold: 3}\n",
                 4, 33, "unknown canonical field 'servce' in group_by", id="unknown-field-in-group_by"),
    pytest.param("    surge: {group_by: [service], window: 15m, threshold: 3, distinct: caler}\n",
                 4, 71, "unknown canonical field 'caler' for distinct", id="unknown-field-in-distinct"),
    pytest.param("    when: {priority: 1}\n    declare: {parent: self}\n    join_by: [sevice]\n    late_children: 1h\n",
                 6, 15, "unknown canonical field 'sevice' in join_by", id="unknown-field-in-join_by"),
    pytest.param("    when:\n      priority: 1\n      state: open\n    declare: {parent: self}\n",
                 6, 14, "'open' is not a valid state", id="invalid-state"),
    pytest.param("    when: {major: yes-please}\n    declare: {parent: self}\n",
                 4, 19, "'yes-please' is not a valid major", id="invalid-major"),
    pytest.param("    when: {priority: high}\n    declare: {parent: self}\n",
                 4, 22, "priority values are integers", id="priority-not-integer"),
    pytest.param("    when: {title: {matches: '(unclosed'}}\n    declare: {parent: self}\n",
                 4, 29, "invalid regular expression", id="bad-regex"),
    pytest.param("    when: {title: {like: x}}\n    declare: {parent: self}\n",
                 4, 20, "unknown operator 'like' (operators: eq, ne, in, not_in, lt, lte, gt, gte, exists, contains, "
                 "matches)", id="unknown-operator"),
    pytest.param("    when: {opened_at: {gt: 2026-01-01}}\n    declare: {parent: self}\n",
                 4, 23, "cannot be compared in a rule", id="time-field-in-when"),
    pytest.param("    surge: {group_by: [service], window: 15m, threshold: 3}\n    declare: {parent: self}\n",
                 3, 5, "'self' is for single-ticket rules", id="surge-with-self-parent"),
    pytest.param("    when: {priority: 1}\n    declare: {parent: self, set: {colour: red}}\n",
                 5, 35, "'colour' cannot be set", id="unsettable-field"),
    pytest.param("    when: {priority: 1}\n    declare: {parent: self}\n    join_by: [service]\n",
                 3, 5, "join_by needs late_children", id="join_by-without-late_children"),
    pytest.param("    surge: {group_by: [service], window: 0s, threshold: 3}\n",
                 4, 42, "window must be longer than 0s", id="zero-window"),
    pytest.param("    when: {service: {lt: 5}}\n    declare: {parent: self}\n",
                 4, 21, "lt compare numbers", id="ordering-on-a-text-field"),
])
def test_rule_mistake_is_located(tmp_path: Path, body: str, line: int, col: int, fragment: str) -> None:
    path = tmp_path / "rules" / "r.yaml"
    path.parent.mkdir()
    path.write_text(RULE_HEAD + body, encoding="utf-8")

    code, errors, stdout = rules_check(path)

    assert code == 1, stdout
    assert len(errors) == 1, stdout
    assert errors[0][:3] == (str(path), line, col)
    assert fragment in errors[0][3]


def test_unknown_field_does_not_hide_an_invalid_value_in_the_same_when(tmp_path: Path) -> None:
    path = write(tmp_path / "rules" / "r.yaml", """
        version: 1
        rules:
          - id: r
            when:
              colour: red
              state: open
            declare: {parent: self}
        """)

    code, errors, _ = rules_check(path)

    assert code == 1
    assert [(line, col) for _, line, col, _ in errors] == [(5, 7), (6, 14)]


def test_rule_id_defined_in_two_files_is_reported_at_the_second(tmp_path: Path) -> None:
    write(tmp_path / "rules" / "a.yaml", """
        version: 1
        rules:
          - id: p1-critical
            when: {priority: 1}
            declare: {parent: self}
        """)
    second = write(tmp_path / "rules" / "b.yaml", """
        version: 1
        rules:
          - id: other
            when: {priority: 2}
            declare: {parent: self}
          - id: p1-critical
            when: {priority: 1}
            declare: {parent: self}
        """)

    code, errors, _ = rules_check(tmp_path / "rules")

    assert code == 1
    assert len(errors) == 1
    assert errors[0][:3] == (str(second), 6, 9)
    assert "rule id 'p1-critical' already defined in" in errors[0][3] and "a.yaml" in errors[0][3]


MAPPING_HEAD = "version: 1\nplatform: servicenow\nfields:\n  id: sys_id\n  opened_at: opened_at\n"


@pytest.mark.parametrize(("body", "line", "col", "fragment"), [
    pytest.param("  service: business_service\n  colour: u_colour\n", 7, 3, "'colour' is not a canonical field",
                 id="unknown-canonical-field"),
    pytest.param("values:\n  state: {'1': new, '2': open}\n", 7, 26, "'2' maps to 'open', which is not a valid state",
                 id="value-map-to-invalid-state"),
    pytest.param("values:\n  priority: {'1 - Critical': 0}\n", 7, 30, "must map to an integer 1..5",
                 id="value-map-to-priority-0"),
    pytest.param("values:\n  colour: {red: 1}\n", 7, 3, "'colour' is not a canonical field", id="value-map-of-unknown-field"),
    pytest.param("times: {zone: Mars/Olympus}\n", 6, 15, "unknown time zone 'Mars/Olympus'", id="bad-time-zone"),
    pytest.param("colour: red\n", 6, 1, "unknown key 'colour'", id="unknown-top-level-key"),
])
def test_mapping_mistake_is_located(tmp_path: Path, body: str, line: int, col: int, fragment: str) -> None:
    path = tmp_path / "conf" / "mapping.yaml"
    path.parent.mkdir()
    path.write_text(MAPPING_HEAD + body, encoding="utf-8")

    code, errors, stdout = rules_check(path)

    assert code == 1, stdout
    assert len(errors) == 1, stdout
    assert errors[0][:3] == (str(path), line, col)
    assert fragment in errors[0][3]


def test_mapping_without_opened_at_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "conf" / "mapping.yaml", """
        version: 1
        platform: jira
        fields:
          id: id
          title: fields.summary
        """)

    code, errors, _ = rules_check(path)

    assert code == 1
    assert errors[0][:2] == (str(path), 4)
    assert "fields must map 'opened_at'" in errors[0][3]


PROCESS_HEAD = "version: 1\n"


@pytest.mark.parametrize(("body", "line", "col", "fragment"), [
    pytest.param("business_hours:\n  time_zone: Europe/Berlinn\n", 3, 14, "unknown time zone 'Europe/Berlinn'",
                 id="bad-time-zone"),
    pytest.param("communications:\n  templates:\n    declared: \"Declared {key}\"\n    update: \"{key} on {servise}\"\n",
                 5, 13, "unknown name 'servise'", id="unknown-template-placeholder"),
    pytest.param("out_of_hours:\n  group: ooh\n  note: \"Routed to {tem}\"\n", 4, 9, "unknown name 'tem'",
                 id="unknown-placeholder-in-out-of-hours-note"),
    pytest.param("change:\n  title: \"Fix {key!r}\"\n", 3, 10, "conversions like !r are not allowed", id="conversion-in-change-title"),
    pytest.param("communications:\n  stakeholders:\n    - {name: ops}\n    - {name: OPS}\n", 4, 5,
                 "stakeholder names must be unique", id="duplicate-stakeholder"),
    pytest.param("communications:\n  templates:\n    update: \"{key.__class__}\"\n",
                 4, 13, "attribute access is not allowed", id="attribute-in-template"),
    pytest.param("business_hours:\n  time_zone: Europe/Berlin\n  start: \"18:00\"\n  end: \"08:00\"\n",
                 3, 3, "business hours must start before they end", id="start-after-end"),
    pytest.param("communications:\n  update_every: 30\n", 3, 17, "needs a unit", id="duration-without-unit"),
    pytest.param("business_hours:\n  days: [mon, funday]\n", 3, 15, "Input should be 'mon'", id="unknown-day"),
    pytest.param("managers:\n  rota:\n    - {id: ann}\n    - {id: ann}\n", 4, 5, "appears twice in the rota",
                 id="person-twice-in-rota"),
])
def test_process_mistake_is_located(tmp_path: Path, body: str, line: int, col: int, fragment: str) -> None:
    path = tmp_path / "rules" / "process.yaml"
    path.parent.mkdir()
    path.write_text(PROCESS_HEAD + body, encoding="utf-8")

    code, errors, stdout = rules_check(path)

    assert code == 1, stdout
    assert len(errors) == 1, stdout
    assert errors[0][:3] == (str(path), line, col)
    assert fragment in errors[0][3]


LOCATION_RULES = """
version: 1
rules:
  - id: location-surge
    surge: {group_by: [category, location], window: 15m, threshold: 10}
  - id: berlin-p1
    when:
      priority: 1
      location: Berlin
    declare: {parent: self}
"""


def test_rule_on_a_field_the_platform_does_not_map_is_an_error_at_the_rule(tmp_path: Path) -> None:
    path = write(tmp_path / "rules" / "location.yaml", LOCATION_RULES)

    code, errors, _ = rules_check(tmp_path / "rules", env={"MIM_PLATFORM": "jira"})

    assert code == 1
    assert [(p, line, col) for p, line, col, _ in errors] == [(str(path), 4, 12), (str(path), 8, 17)]
    assert all("uses field 'location'" in m and "jira" in m for *_, m in errors)


def test_rule_on_a_field_the_platform_maps_passes(tmp_path: Path) -> None:
    write(tmp_path / "rules" / "location.yaml", LOCATION_RULES)

    code, errors, stdout = rules_check(tmp_path / "rules", env={"MIM_PLATFORM": "servicenow"})

    assert (code, errors) == (0, []), stdout
    assert stdout.startswith("ok: 1 rules file")


def test_shipped_rules_process_and_mappings_pass_rules_check() -> None:
    code, errors, stdout = rules_check()

    assert (code, errors) == (0, []), stdout
    assert "1 process file" in stdout and "2 mapping files" in stdout


def test_shipped_rule_tests_pass() -> None:
    result = CliRunner().invoke(main, ["rules", "test"])

    assert result.exit_code == 0, result.output
    assert re.search(r"^(\d+) passed, 0 failed$", result.stdout, re.MULTILINE)
    assert "FAIL" not in result.stdout


def test_failing_rule_test_exits_1_with_a_diff(tmp_path: Path) -> None:
    rules = Path(__file__).resolve().parent.parent / "rules"
    case = write(tmp_path / "cases.yaml", """
        version: 1
        cases:
          - name: three callers are not enough
            now: 2026-03-02T10:30:00Z
            defaults: {service: web-shop, state: new}
            tickets:
              - {id: t1, opened_at: 2026-03-02T10:00:00Z, caller: a}
              - {id: t2, opened_at: 2026-03-02T10:01:00Z, caller: b}
              - {id: t3, opened_at: 2026-03-02T10:02:00Z, caller: c}
            expect:
              major_incidents:
                - {parent: t1, rule: service-surge, children: [t2, t3]}
        """)

    result = CliRunner().invoke(main, ["rules", "test", "--rules", str(rules), str(case)])

    assert result.exit_code == 1
    assert "FAIL" in result.stdout and "- expected: parent=t1 rule=service-surge children=[t2, t3]" in result.stdout


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("30s", timedelta(seconds=30), id="seconds"),
    pytest.param("15m", timedelta(minutes=15), id="minutes"),
    pytest.param("4h", timedelta(hours=4), id="hours"),
    pytest.param("5d", timedelta(days=5), id="days"),
    pytest.param("1w", timedelta(weeks=1), id="weeks"),
    pytest.param("1h30m", timedelta(minutes=90), id="combined"),
    pytest.param(" 1H 30M ", timedelta(minutes=90), id="spaces-and-case"),
    pytest.param("1.5h", timedelta(minutes=90), id="decimal"),
])
def test_duration_with_unit_is_parsed(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize(("value", "fragment"), [
    pytest.param(15, "needs a unit", id="bare-int"),
    pytest.param(1.5, "needs a unit", id="bare-float"),
    pytest.param("15", "needs a unit", id="bare-number-string"),
    pytest.param("15 minutes", "invalid duration", id="word-unit"),
    pytest.param("m15", "invalid duration", id="unit-first"),
    pytest.param("", "empty", id="empty"),
    pytest.param(True, "needs a unit", id="boolean"),
    pytest.param(None, "must be a string", id="none"),
])
def test_duration_without_a_usable_unit_is_rejected(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_duration(value)
