"""``mim backtest --score`` (connector/tools/scoring.py, sweep.py): labelled storms, recall, purity, delays and
months from the history's own links, which are labels only; the sweep; labels from canonical JSONL, a
ServiceNow export, a Jira export and any export column."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cli import main
from connector.tools.scoring import Incident, StormSpec, find_storms, months_between, parse_storm, score
from connector.tools.sweep import parse_sweep, variant

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


pytestmark = pytest.mark.usefixtures("isolated")  # no MIM_* variable or mim.toml of the developer's shell


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# -- the figures -----------------------------------------------------------------------------------------------


def storm(label: str, start: float, size: int = 12, step: float = 3.0) -> tuple[dict[str, str], dict[str, datetime]]:
    ids = [f"{label}-{i}" for i in range(size)]
    return {i: label for i in ids}, {i: at(start + step * n) for n, i in enumerate(ids)}


def test_a_label_with_ten_tickets_within_an_hour_is_a_storm_and_a_slow_one_is_not() -> None:
    fast_labels, fast_times = storm("fast", 0, size=10, step=6.5)  # ten within 58.5 minutes
    slow_labels, slow_times = storm("slow", 0, size=30, step=7.0)  # never nine within an hour
    storms = find_storms({**fast_labels, **slow_labels}, {**fast_times, **slow_times}, StormSpec())
    assert [s.label for s in storms] == ["fast"]
    assert [s.label for s in find_storms({**fast_labels, **slow_labels}, {**fast_times, **slow_times},
                                         parse_storm("8/60m"))] == ["fast", "slow"]


def test_the_parent_is_no_child_of_its_own_storm() -> None:
    # a ServiceNow export holds the parent incident too, labelled with itself: a parent and nine children are
    # not "a parent with ten of its children"
    labels, times = storm("child", 0, size=9)
    labels = {key: "INC1" for key in labels} | {"INC1": "INC1"}
    times = times | {"INC1": at(-1)}
    assert find_storms(labels, times, StormSpec()) == []
    labels["child-9"], times["child-9"] = "INC1", at(30)
    [found] = find_storms(labels, times, StormSpec())
    assert "INC1" not in [ticket_id for _, ticket_id in found.tickets]


def test_recall_purity_delay_and_declarations_per_month() -> None:
    a_labels, a_times = storm("A", 0)
    b_labels, b_times = storm("B", 600)
    labels = {**a_labels, **b_labels, "x1": "X", "x2": "Y"}
    opened = {**a_times, **b_times, "x1": at(5), "x2": at(7)}
    incidents = [
        Incident(at(20), ["A-0", "A-1", "A-2", "A-3", "A-4", "A-5", "x1", "x2", "unlabelled"]),  # 6 A, 1 X, 1 Y
        Incident(at(40), ["other"]),
    ]
    result = score(labels, opened, incidents, at(0), at(0) + timedelta(days=45))
    data = result.to_dict()
    assert (data["storms"], data["caught"], data["recall"]) == (2, 1, 0.5)
    assert data["purity"] == 0.75  # 6 of the 8 labelled tickets carry the majority label
    assert data["declarations_per_month"] == 1.0  # two declarations over March and April
    assert data["delay_median_s"] == data["delay_p90_s"] == (20 - 12) * 60  # from A's 5th ticket (at 12 minutes)
    assert data["missed"] == ["B"]
    assert [m["month"] for m in data["months"]] == ["2026-03", "2026-04"]
    march = data["months"][0]
    assert (march["storms"], march["caught"], march["declarations"], march["purity"]) == (2, 1, 2, 0.75)
    assert set(data) >= {"storms", "caught", "recall", "purity", "declarations_per_month", "delay_median_s",
                         "delay_p90_s", "months"}


def test_a_storm_held_by_no_single_incident_is_not_caught() -> None:
    labels, opened = storm("A", 0)
    incidents = [Incident(at(10), ["A-0", "A-1", "A-2", "A-3"]), Incident(at(30), ["A-4", "A-5", "A-6", "A-7"])]
    assert score(labels, opened, incidents, at(0), at(60)).caught == 0


def test_storms_before_from_are_left_out_and_months_count_from_there() -> None:
    a_labels, a_times = storm("A", 0)
    b_labels, b_times = storm("B", 60 * 24 * 40)
    result = score({**a_labels, **b_labels}, {**a_times, **b_times}, [], at(0), at(60 * 24 * 41),
                   since=at(60 * 24 * 35))
    assert result.storms == 1 and result.months_spanned == 1


def test_storm_spec_parsing() -> None:
    assert parse_storm("10/60m") == StormSpec(10, timedelta(minutes=60), 5)
    assert parse_storm("3/15m").caught == 3
    for bad in ("10", "10/60", "x/60m", "0/1h"):
        with pytest.raises(ValueError):
            parse_storm(bad)


def test_months_between_spans_calendar_months_both_ends_included() -> None:
    assert months_between(datetime(2013, 11, 30, tzinfo=UTC), datetime(2014, 1, 1, tzinfo=UTC)) == \
        ["2013-11", "2013-12", "2014-01"]


# -- the command -----------------------------------------------------------------------------------------------


def backtest(*args: str) -> Result:
    return CliRunner().invoke(main, ["backtest", "--no-progress", *args])


def rules_dir(tmp_path: Path, surge: dict[str, Any] | None = None) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    spec = surge or {"group_by": ["ci"], "window": "15m", "threshold": 5}
    (folder / "r.yaml").write_text(json.dumps({"version": 1, "rules": [
        {"id": "ci-surge", "surge": spec, "late_children": {"while": "surge", "tail": "10m"}}]}), encoding="utf-8")
    return folder


def history(linked: bool = True) -> list[dict[str, Any]]:
    """A storm of 12 calls on db1 within 24 minutes, all linked by the desk to IM1; noise on other CIs,
    each its own incident."""
    rows = [{"id": f"s{i:02d}", "opened_at": at(60 + 2 * i).isoformat(), "ci": "db1",
             **({"parent": "IM1"} if linked else {})} for i in range(12)]
    rows += [{"id": f"n{i:02d}", "opened_at": at(7 * i).isoformat(), "ci": f"ci{i}", "parent": f"IM-n{i}"}
             for i in range(40)]
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_score_json_has_the_contract_block_and_the_replay_ignores_the_links(tmp_path: Path) -> None:
    rules = rules_dir(tmp_path)
    linked = backtest("--tickets", str(write_jsonl(tmp_path / "h.jsonl", history())), "--rules", str(rules),
                      "--score", "--json")
    assert linked.exit_code == 0, linked.output
    data = json.loads(linked.stdout)
    assert (data["score"]["storms"], data["score"]["caught"], data["score"]["purity"]) == (1, 1, 1.0)
    (incident,) = data["major_incidents"]
    assert incident["parent"] == "s00" and len(incident["children"]) == 11
    # the same history without links declares exactly the same: links are labels only
    plain = backtest("--tickets", str(write_jsonl(tmp_path / "p.jsonl", history(linked=False))), "--rules", str(rules),
                     "--json")
    assert json.loads(plain.stdout)["major_incidents"] == data["major_incidents"]
    # without --score a linked ticket is left alone, as the engine does live
    unscored = backtest("--tickets", str(tmp_path / "h.jsonl"), "--rules", str(rules), "--json")
    assert json.loads(unscored.stdout)["major_incidents"] == []


def test_score_table_and_a_storm_of_another_size(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "h.jsonl", history())
    table = backtest("--tickets", str(path), "--rules", str(rules_dir(tmp_path)), "--score", "--storm", "13/60m")
    assert table.exit_code == 0, table.output
    assert "labelled storms 0, caught 0" in table.stdout and "2026-03" in table.stdout
    bad = backtest("--tickets", str(path), "--score", "--storm", "ten")
    assert bad.exit_code == 2 and "--storm" in bad.output


def test_sweep_replays_once_per_value(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "h.jsonl", history())
    rules = rules_dir(tmp_path)
    result = backtest("--tickets", str(path), "--rules", str(rules), "--sweep", "ci-surge:surge.threshold=5,13", "--json")
    assert result.exit_code == 0, result.output
    points = json.loads(result.stdout)["sweep"]["results"]
    assert [(p["value"], p["score"]["caught"]) for p in points] == [(5, 1), (13, 0)]
    table = backtest("--tickets", str(path), "--rules", str(rules), "--sweep", "surge.threshold=5,13")
    assert table.exit_code == 0 and table.stdout.splitlines()[0] == "sweep of surge.threshold on every rule that has it"
    wrong = backtest("--tickets", str(path), "--rules", str(rules), "--sweep", "ci-surge:surge.threshold=0")
    assert wrong.exit_code == 2 and "greater than or equal to 1" in wrong.output


def test_parse_sweep_and_variants() -> None:
    spec = parse_sweep("ci-surge:surge.baseline.probability=1e-4, 1e-6")
    assert (spec.rule, spec.path, spec.values) == ("ci-surge", ("surge", "baseline", "probability"), ("1e-4", "1e-6"))
    from connector.detection.rules import Rule

    rule = Rule.model_validate({"id": "ci-surge", "surge": {"group_by": ["ci"], "window": "15m", "threshold": 5}})
    (changed,) = variant([rule], spec, "1e-6")
    assert changed.surge is not None and changed.surge.baseline is not None
    assert changed.surge.baseline.probability == 1e-6
    with pytest.raises(ValueError, match="nothing to sweep"):
        variant([rule], parse_sweep("other:surge.threshold=3"), 3)
    with pytest.raises(ValueError):
        parse_sweep("surge.threshold")


@pytest.mark.parametrize("values", ["'5", "*a", "[1,2]", "{a: 1}"])
def test_a_sweep_value_that_is_not_one_value_is_a_clean_error(tmp_path: Path, values: str) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text(json.dumps({"id": "t1", "opened_at": at(0).isoformat(), "ci": "db1"}) + "\n", encoding="utf-8")

    result = backtest("--tickets", str(path), "--rules", str(rules_dir(tmp_path)),
                      "--sweep", f"ci-surge:surge.threshold={values}")

    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "invalid sweep" in result.stderr and "Traceback" not in result.output


def test_labels_from_a_servicenow_export_come_from_each_tickets_last_version(tmp_path: Path) -> None:
    header = "number,sys_mod_count,opened_at,cmdb_ci,parent_incident,incident_state"
    rows = []
    for i in range(12):  # linked only in a later update, as desks do
        opened = (at(60 + 2 * i)).strftime("%d/%m/%Y %H:%M")
        rows.append(f"INC{i:04d},0,{opened},db1,?,New")
        rows.append(f"INC{i:04d},1,{opened},db1,INC9999,Active")
    path = tmp_path / "incident_event_log.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    result = backtest("--tickets", str(path), "--rules", str(rules_dir(tmp_path)), "--score", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["score"]["caught"] == 1


def test_labels_from_an_export_column_such_as_problem_id(tmp_path: Path) -> None:
    header = "number,sys_mod_count,opened_at,cmdb_ci,problem_id,incident_state"
    rows = [f"INC{i:04d},0,{at(60 + 2 * i).strftime('%d/%m/%Y %H:%M')},db1,Problem ID  2,New" for i in range(12)]
    path = tmp_path / "incident_event_log.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    result = backtest("--tickets", str(path), "--rules", str(rules_dir(tmp_path)), "--score", "--label", "problem_id",
                      "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["score"]["storms"] == 1
    none = backtest("--tickets", str(path), "--rules", str(rules_dir(tmp_path)), "--score", "--label", "rfc")
    assert "no ticket carries a 'rfc' label" in none.stderr


def test_labels_from_a_jira_export_come_from_issue_links(tmp_path: Path) -> None:
    issues = []
    for i in range(12):
        issues.append({"id": str(100 + i), "key": f"ITSM-{i}", "fields": {
            "summary": "down", "created": at(60 + 2 * i).isoformat(), "updated": at(90).isoformat(),
            "status": {"name": "Open", "statusCategory": {"key": "new"}}, "components": [{"name": "web-shop"}],
            "issuelinks": [{"type": {"name": "Problem/Incident", "inward": "is caused by", "outward": "causes"},
                            "inwardIssue": {"id": "999", "key": "ITSM-999"}}]}})
    path = tmp_path / "issues.json"
    path.write_text(json.dumps({"issues": issues}), encoding="utf-8")
    rules = rules_dir(tmp_path, {"group_by": ["service"], "window": "15m", "threshold": 5})
    result = backtest("--tickets", str(path), "--rules", str(rules), "--platform", "jira", "--score", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["score"]["caught"] == 1


def test_from_warms_the_baselines_and_replays_the_rest(tmp_path: Path) -> None:
    rows = history()
    path = write_jsonl(tmp_path / "h.jsonl", rows)
    rules = rules_dir(tmp_path, {"group_by": ["ci"], "window": "15m", "threshold": 5,
                                 "baseline": {"probability": 1e-4, "min_history": "1h"}})
    result = backtest("--tickets", str(path), "--rules", str(rules), "--from", at(50).isoformat(), "--score", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["warm_up_tickets"] == sum(1 for r in rows if r["opened_at"] < at(50).isoformat())
    assert data["score"]["caught"] == 1
    bad = backtest("--tickets", str(path), "--from", "yesterday")
    assert bad.exit_code == 2 and "--from" in bad.output
