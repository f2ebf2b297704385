"""Baselines in the sync job, through ``run_cycle`` with the in-memory platform and the shipped rules: the
first sync warms them from history (only the fields they need), every cycle learns and saves them, a gap
is caught up, ``mim baseline learn`` re-learns them, and what the issue asks to see: a busy CI with steady
traffic far above five callers in fifteen minutes declares nothing, a quiet one with eight distinct
callers in ten minutes is declared within one poll."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from connector.detection.rules import load_rules
from connector.job.baselines import load_baselines
from connector.job.cycle import run_cycle
from connector.job.store import StateStore
from connector.platforms.errors import PlatformError
from connector.process.processfile import ProcessFile
from connector.tools.baselines import relearn
from tests.fakes import Clock, FakePlatform

ROOT = Path(__file__).resolve().parent.parent
RULES = load_rules([ROOT / "rules"]).rules
PROCESS = ProcessFile(version=1)
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)  # a Monday


@pytest.fixture()
def env(tmp_path: Path):
    clock = Clock(NOW)
    platform = FakePlatform(clock)
    store = StateStore(tmp_path / "state.sqlite", "servicenow")
    yield clock, platform, store, tmp_path
    store.close()


def history(platform: FakePlatform, per_hour: int, weeks: int = 2, ci: str = "payments-db",
            service: str = "payments") -> None:
    """``weeks`` of steady traffic on one CI before now, already resolved (as history is)."""
    start = NOW - timedelta(weeks=weeks)
    for n in range(weeks * 168 * per_hour):
        at = start + timedelta(seconds=3600 * n / per_hour)
        platform.add(ci=ci, service=service, caller=f"h{n}", priority=4, state="resolved", opened_at=at, updated_at=at)


def cycle(platform: FakePlatform, store: StateStore, clock: Clock, **kwargs):
    kwargs.setdefault("planners", ())
    return run_cycle(platform, store, RULES, PROCESS, clock(), **kwargs)


def test_a_busy_ci_with_steady_traffic_far_above_five_in_fifteen_minutes_declares_nothing(env) -> None:
    clock, platform, store, _ = env
    history(platform, per_hour=40)
    declared = []
    for minute in range(180):  # three hours at its usual pace (10 callers every 15 minutes), a poll a minute
        platform.add(ci="payments-db", service="payments", caller=f"live{minute}", priority=3)
        clock.advance(seconds=90)
        if minute % 2:
            declared += cycle(platform, store, clock).declarations
    assert declared == []


def test_a_quiet_ci_with_eight_distinct_callers_in_ten_minutes_is_declared_within_one_poll(env) -> None:
    clock, platform, store, _ = env
    history(platform, per_hour=40)  # the desk is busy elsewhere; hr-portal is quiet
    assert cycle(platform, store, clock).declarations == []
    ids = []
    for i in range(8):
        ids.append(platform.add(ci="hr-portal", service="hr", caller=f"c{i}", priority=4)["id"])
        clock.advance(seconds=75)
    report = cycle(platform, store, clock)
    assert [d["rule"] for d in report.declarations] in (["ci-surge"], ["service-surge"])
    assert all(platform.records[i].get("parent") == ids[0] for i in ids[1:])


def test_the_first_sync_warms_the_baselines_from_history_reading_only_what_they_need(env) -> None:
    clock, platform, store, _ = env
    history(platform, per_hour=4, weeks=1)
    first = cycle(platform, store, clock)
    assert first.baseline_warm_up == 4 * 168
    assert set(platform.history_fields) == {"id", "opened_at", "service", "ci"}
    saved = store.baseline_rules()
    assert set(saved) == {"service-surge", "ci-surge"}
    learned_to = saved["ci-surge"]["learned_to"]
    assert dict(store.baseline_groups("ci-surge"))['["payments-db"]']["slots"]
    clock.advance(hours=3)
    second = cycle(platform, store, clock)
    assert second.baseline_warm_up == 0  # warmed once; later cycles learn from their own tickets
    assert store.baseline_rules()["ci-surge"]["learned_to"] > learned_to


def test_a_dry_run_learns_nothing_into_the_state(env) -> None:
    clock, platform, store, _ = env
    history(platform, per_hour=2, weeks=1)
    cycle(platform, store, clock, dry_run=True)
    assert store.baseline_rules() == {}


def test_a_dry_run_after_a_rule_edit_keeps_what_the_old_rule_learned(env) -> None:
    # previewing a rule change is when its fingerprint changes: the dry run used to forget the old baseline
    clock, platform, store, _ = env
    history(platform, per_hour=2, weeks=1)
    cycle(platform, store, clock)
    before = store.baseline_groups("ci-surge")
    edited = [r.model_copy(update={"surge": r.surge.model_copy(update={"group_by": ["ci", "service"]})})  # type: ignore[union-attr]
              if r.id == "ci-surge" else r for r in RULES]
    clock.advance(minutes=5)
    run_cycle(platform, store, edited, PROCESS, clock(), planners=(), dry_run=True)
    assert before and store.baseline_groups("ci-surge") == before and "ci-surge" in store.baseline_rules()


@pytest.mark.parametrize("damage", [
    "UPDATE baseline_groups SET data = '{not json'",
    "UPDATE baseline_groups SET data = '{\"slots\": {\"999\": 1.0}}'",
    "UPDATE baseline_groups SET data = '{\"slots\": {\"3\": \"x\"}}'",
    "UPDATE baseline_groups SET data = '[1, 2]'",
    "UPDATE baseline_groups SET grp = 'not json'",
    "UPDATE baseline_rules SET data = 'garbage'",
    "UPDATE baseline_rules SET data = json_set(data, '$.learned_to', 'abc')",
    "UPDATE baseline_rules SET data = json_set(data, '$.shape', json('[\"x\"]'))",
    "UPDATE baseline_rules SET data = json_set(data, '$.base', 1e300)",
    "UPDATE baseline_rules SET data = replace(data, '\"base\": ', '\"base\": Infinity, \"was\": ')",
    "UPDATE baseline_rules SET data = json_set(data, '$.learned_to', 100000000000000)",
    "UPDATE baseline_groups SET data = json_set(data, '$.moments', json('[1.0]'))",
    "UPDATE baseline_groups SET data = json_set(data, '$.capped', json('[100000, 492000]'))",
])
def test_a_damaged_baseline_row_is_reported_and_learned_again_never_a_crash(env, damage: str) -> None:
    clock, platform, store, _ = env
    history(platform, per_hour=2, weeks=1)
    cycle(platform, store, clock)
    store.db.execute(damage + " WHERE rule = 'ci-surge'")
    clock.advance(minutes=5)

    report = cycle(platform, store, clock)

    assert any("baseline of rule ci-surge is damaged" in line and "learned again" in line for line in report.state_repairs)
    assert report.baseline_warm_up > 0
    assert "ci-surge" in store.baseline_rules() and store.baseline_groups("ci-surge")  # learned again
    clock.advance(minutes=5)
    assert cycle(platform, store, clock).state_repairs == []  # and the damage is gone


def test_a_gap_longer_than_a_cycles_look_back_is_caught_up_from_history(env) -> None:
    clock, platform, store, _ = env
    history(platform, per_hour=2, weeks=1)
    cycle(platform, store, clock)
    for n in range(48):  # two days without a sync, the CI twice as busy
        at = clock() + timedelta(minutes=30 * n)
        platform.add(ci="payments-db", service="payments", caller=f"g{n}", state="resolved", opened_at=at, updated_at=at)
    clock.advance(days=2)
    report = cycle(platform, store, clock)
    assert report.baseline_warm_up >= 40
    learned = store.baseline_rules()["ci-surge"]["learned_to"]
    assert learned >= int((clock() - timedelta(hours=3)).timestamp() // 3600)


def test_mim_baseline_learn_forgets_and_learns_again(env) -> None:
    clock, platform, store, _ = env
    history(platform, per_hour=3, weeks=2)
    cycle(platform, store, clock)
    result = relearn(platform, store, RULES, clock(), timedelta(weeks=1), ["ci-surge"])
    assert result.rules == ["ci-surge"] and result.tickets == 3 * 168
    assert store.baseline_rules()["ci-surge"]["start"] == int((clock() - timedelta(weeks=1)).timestamp() // 3600)
    with pytest.raises(ValueError, match="no surge rule with a baseline named p1-critical"):
        relearn(platform, store, RULES, clock(), timedelta(weeks=1), ["p1-critical"])


def test_a_relearn_that_fails_reading_history_keeps_what_was_learned(env) -> None:
    clock, platform, store, _ = env
    history(platform, per_hour=3, weeks=2)
    cycle(platform, store, clock)
    before = (store.baseline_rules(), sorted(store.baseline_groups("ci-surge")))
    readable = platform.fetch_history

    def failing(since, fields):
        yield from list(readable(since, fields))[:100]
        raise PlatformError("connection reset by peer")

    platform.fetch_history = failing  # type: ignore[method-assign]
    with pytest.raises(PlatformError):
        relearn(platform, store, RULES, clock(), timedelta(weeks=4))
    assert (store.baseline_rules(), sorted(store.baseline_groups("ci-surge"))) == before


def test_explain_shows_observed_against_expected_and_the_probability(env, monkeypatch: pytest.MonkeyPatch) -> None:
    clock, platform, store, tmp = env
    history(platform, per_hour=3, weeks=4)
    cycle(platform, store, clock)
    ticket = platform.add(ci="payments-db", service="payments", caller="x", priority=3)["id"]
    clock.advance(minutes=1)
    cycle(platform, store, clock)
    store.close()
    monkeypatch.setenv("MIM_PLATFORM", "servicenow")
    monkeypatch.setenv("MIM_STATE", str(tmp / "state.sqlite"))
    monkeypatch.setenv("MIM_RULES", str(ROOT / "rules"))
    text = CliRunner().invoke(cli.main, ["explain", ticket])
    assert text.exit_code == 0, text.output
    assert "baseline: observed 1, expected 1.00 at this hour of the week; P(>= 1) = 0.63 against 1e-06" in text.output
    data = json.loads(CliRunner().invoke(cli.main, ["explain", ticket, "--json"]).output)
    ci = next(r for r in data["rules"] if r["rule"] == "ci-surge")
    assert ci["decided_by"] == "baseline" and ci["expected"] == pytest.approx(1.0) and ci["fires"] is False
    assert ci["probability"] == pytest.approx(1 - math.exp(-1.0)) and ci["threshold"] == 10  # P(>=10 | 1) < 1e-6
    shown = CliRunner().invoke(cli.main, ["baseline", "show"])
    assert shown.exit_code == 0 and "ci-surge: learned" in shown.output and "payments-db: 2.9" in shown.output
    week = CliRunner().invoke(cli.main, ["baseline", "show", "--rule", "ci-surge", "--group", "payments-db"])
    assert week.exit_code == 0 and week.output.splitlines()[2].startswith("  Mon")


def test_mim_baseline_learn_reads_the_simulators_history(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from connector.sim.servicenow import ServiceNowSim

    sn = ServiceNowSim(user="sync", password="sync-secret-pw")
    server = sn.server().start()
    try:
        now = datetime.now(timezone.utc)
        for n in range(30):
            opened = now - timedelta(hours=2 * n + 5)
            sn.insert("incident", {"short_description": "slow", "business_service": "payments", "cmdb_ci": "db1",
                                   "caller_id": f"c{n}", "opened_at": opened.strftime("%Y-%m-%d %H:%M:%S")})
        env = {k: v for k, v in os.environ.items() if not k.startswith("MIM_")}
        env.update(MIM_PLATFORM="servicenow", MIM_SERVICENOW_URL=server.url, MIM_SERVICENOW_USERNAME="sync",
                   MIM_SERVICENOW_PASSWORD="sync-secret-pw", MIM_STATE=str(tmp_path / "state.sqlite"),
                   PYTHONPATH=str(ROOT))
        done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "baseline", "learn", "--weeks", "1"], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "learned ci-surge, service-surge from 30 tickets" in done.stdout
        assert [r["method"] for r in server.requests() if r["path"].endswith("/incident")] == ["GET"]
        shown = subprocess.run([sys.executable, str(ROOT / "cli.py"), "baseline", "show", "--json"], env=env,
                               capture_output=True, text=True, timeout=60)
        assert {s["rule"] for s in json.loads(shown.stdout)} == {"ci-surge", "service-surge"}
    finally:
        server.stop()


def test_baseline_show_on_a_postgresql_state_never_prints_its_password(monkeypatch) -> None:
    # it used to test the URL as a file path: "no state at postgresql://mim:<password>@..." (exit 1)
    monkeypatch.setenv("MIM_PLATFORM", "servicenow")
    monkeypatch.setenv("MIM_SERVICENOW_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("MIM_STATE", "postgresql://mim:pg-secret-pw@127.0.0.1:1/mim")

    shown = CliRunner().invoke(cli.main, ["baseline", "show"])

    assert shown.exit_code == 3, shown.output
    assert "pg-secret-pw" not in shown.output and "cannot reach the state database postgresql://mim:***@" in shown.output


def test_tickets_resolved_or_linked_before_their_hour_is_learned_still_teach_the_live_baseline(env) -> None:
    # The cycle learns an hour 20-80 minutes after it ends, replaying its tickets as they are by then: on a desk
    # that resolves calls in ten minutes they no longer met `state: new|in_progress|on_hold`, so every live hour
    # was learned as empty (40/h fell to 37.9 in a day, 6/h in six weeks) and the steady CI ended up "surging".
    clock, platform, store, _ = env
    history(platform, per_hour=40, weeks=4)
    cycle(platform, store, clock)
    opened: list[tuple[datetime, str]] = []
    for n in range(24 * 40):  # a day at the same 40 an hour, each call resolved ten minutes after it came in
        clock.advance(seconds=90)
        opened.append((clock(), platform.add(ci="payments-db", service="payments", caller=f"live{n}", priority=4)["id"]))
        while opened and opened[0][0] <= clock() - timedelta(minutes=10):
            _, done = opened.pop(0)
            platform.records[done].update(state="resolved", updated_at=clock())
        if n % 20 == 19:
            assert cycle(platform, store, clock).declarations == []
    learned = load_baselines(store, RULES, forget_stale=False).get("ci-surge")
    assert learned is not None and learned.mean_hour("payments-db") == pytest.approx(40, abs=0.5)
