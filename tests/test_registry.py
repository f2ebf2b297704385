"""The major incident registry's upkeep (pure): declarations and late children registered, the registry kept in
line with the platform (humans win), a lost incident rebuilt from its marker, created parents re-keyed, and the
follow-up readings kept for the planner."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from connector.core.ticket import Ticket
from connector.detection.engine import Decisions, Declaration, LateLink
from connector.detection.markers import marker_for
from connector.detection.process_state import (
    Declared,
    FollowUp,
    HumanDecision,
    PlatformReading,
    ReviewCounts,
    ReviewTaskReading,
)
from connector.detection.registry import MIRecord, Registry, record_followups
from connector.detection.rules import load_rules

ROOT = Path(__file__).resolve().parent.parent
RULES = load_rules([ROOT / "rules"]).rules
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
NOW = T0 + timedelta(minutes=10)


def ticket(ident: str, minutes: float = 0, **fields: Any) -> Ticket:
    return Ticket(**{"id": ident, "key": f"INC-{ident}", "opened_at": T0 + timedelta(minutes=minutes), "state": "new",
                     **fields})


def declaration(mi: str = "p", *, new_parent: bool = False, children: int = 3, service: str = "web-shop") -> Declaration:
    tickets = tuple(ticket(f"{mi}{i}" if i or new_parent else mi, i, service=service) for i in range(children + 1))
    return Declaration(mi_id=f"new-{mi}" if new_parent else mi, rule="service-surge", mode="propose",
                       parent_mode="new" if new_parent else "earliest", group_fields=("service",), group=(service,),
                       detected_at=T0 + timedelta(minutes=5), started_at=T0, tickets=tickets,
                       parent=None if new_parent else tickets[0], set_fields={})


def registered(*decls: Declaration, links: tuple[LateLink, ...] = ()) -> Registry:
    registry = Registry()
    registry.register(Decisions(declarations=list(decls), late_links=list(links)), NOW)
    return registry


def test_a_declaration_is_registered_with_what_was_known_when_it_was_declared() -> None:
    record = registered(declaration()).get("p")
    assert record is not None
    assert (record.rule, record.group, record.key, record.stage, record.status) == (
        "service-surge", ["web-shop"], "INC-p", "identification", "open")
    assert (record.started_at, record.declared_at, record.children) == (T0, NOW, ["p1", "p2", "p3"])
    assert record.declaration == Declared(first_opened_at=T0, declared_at=NOW, detected_at=T0 + timedelta(minutes=5),
                                          triggered_by=["p", "p1", "p2", "p3"], group_fields=["service"], mode="propose",
                                          service="web-shop")


def test_a_declaration_already_registered_is_left_as_it_is() -> None:
    registry = registered(declaration())
    registry.get("p").children.append("x")  # type: ignore[union-attr]
    registry.register(Decisions(declarations=[declaration()]), NOW + timedelta(hours=1))
    assert registry.get("p").children == ["p1", "p2", "p3", "x"]  # type: ignore[union-attr]


def test_a_created_parent_is_registered_under_its_synthetic_id() -> None:
    record = registered(declaration("q", new_parent=True)).get("new-q")
    assert record is not None and record.synthetic_id == "new-q" and record.key is None
    assert record.children == ["q0", "q1", "q2", "q3"]


def test_a_late_ticket_joins_its_open_major_incident_once() -> None:
    late = LateLink(ticket=ticket("late", 8, service="web-shop"), mi_id="p", rule="service-surge", group=("web-shop",),
                    at=NOW)
    registry = registered(declaration(), links=(late, late))
    assert registry.get("p").children == ["p1", "p2", "p3", "late"]  # type: ignore[union-attr]
    assert registered(links=(late,)).records == {}, "no incident, nothing to join"


@pytest.mark.parametrize(("fields", "status"), [
    ({"major": "rejected"}, "rejected"),
    ({"major": "canceled", "state": "in_progress"}, "rejected"),
    ({"state": "closed"}, "closed"),
    ({"state": "resolved", "resolved_at": NOW}, "resolved"),
    ({"state": "canceled"}, "resolved"),
    ({"state": "in_progress"}, "open"),
], ids=["rejected", "canceled", "closed", "resolved", "ticket-canceled", "open"])
def test_the_status_follows_the_platform(fields: dict[str, Any], status: str) -> None:
    registry = registered(declaration())
    registry.refresh([ticket("p", **{"major": "proposed", **fields})], RULES)
    assert registry.get("p").status == status  # type: ignore[union-attr]


def test_a_stage_set_on_the_platform_and_the_first_resolution_are_kept() -> None:
    registry = registered(declaration())
    registry.refresh([ticket("p", major="accepted", state="resolved", stage="resolution", resolved_at=NOW)], RULES)
    registry.refresh([ticket("p", major="accepted", state="resolved", resolved_at=NOW + timedelta(hours=1))], RULES)
    record = registry.get("p")
    assert record is not None and record.stage == "resolution"
    assert record.reading == PlatformReading(major="accepted", state="resolved", resolved_at=NOW)


def test_a_marked_incident_the_registry_lost_is_rebuilt_from_its_marker() -> None:
    registry = Registry()
    lost = ticket("m", major="proposed", service="web-shop", marker=marker_for("service-surge", "m"),
                  updated_at=NOW)
    created = ticket("c", major="accepted", service="vpn", marker=marker_for("service-surge", "new-abc"))
    child = ticket("k", parent="m")
    registry.refresh([lost, created, child, ticket("plain", major="none", marker="mim:service-surge"),
                      ticket("foreign", major="proposed", marker="other:x"),
                      ticket("unknown-rule", major="proposed", marker="mim:no-such-rule")], RULES)
    assert set(registry.records) == {"m", "c"}
    assert registry.records["m"].group == ["web-shop"] and registry.records["m"].children == ["k"]
    assert registry.records["c"].synthetic_id == "new-abc" and registry.records["m"].synthetic_id is None


def test_a_child_a_human_unlinked_is_no_longer_tracked() -> None:
    registry = registered(declaration())
    registry.refresh([ticket("p1", parent=None), ticket("p2", parent="other"), ticket("p3", parent="p")], RULES)
    assert registry.get("p").children == ["p3"]  # type: ignore[union-attr]


def test_a_created_parent_keeps_its_children_until_it_has_a_real_id() -> None:
    registry = registered(declaration("q", new_parent=True))
    registry.refresh([ticket("q1", parent=None)], RULES)
    assert registry.get("new-q").children == ["q0", "q1", "q2", "q3"]  # type: ignore[union-attr]


def test_a_created_parent_is_rekeyed_to_its_real_id() -> None:
    registry = registered(declaration("q", new_parent=True), declaration("r", new_parent=True))
    registry.records["real-r"] = MIRecord(id="real-r", rule="service-surge", group=["web-shop"], started_at=T0,
                                          declared_at=NOW, children=["x"])
    dropped = registry.rekey_created({"new-q": "real-q", "new-r": "real-r", "new-gone": "real-gone"})
    assert dropped == ["new-q", "new-r"]
    assert set(registry.records) == {"real-q", "real-r"}
    assert (registry.records["real-q"].id, registry.records["real-q"].synthetic_id) == ("real-q", "new-q")
    assert registry.records["real-r"].children == ["r0", "r1", "r2", "r3", "x"], "merged with the rebuilt record"
    assert registry.rekey_created({"new-q": "real-q"}) == [], "done once"


def test_active_records_and_the_tickets_to_keep() -> None:
    registry = registered(declaration(), declaration("o", service="vpn"), declaration("d", service="payments"))
    registry.records["o"].status = "rejected"
    registry.records["d"].progress.done = True
    assert [r.id for r in registry.active()] == ["p"]
    assert registry.ticket_ids() == {"p", "p1", "p2", "p3", "o", "o1", "o2", "o3", "d", "d1", "d2", "d3"}
    assert len(registry) == 3 and "p" in registry and [r.id for r in registry] == ["p", "o", "d"]


def test_follow_up_readings_are_kept_for_the_planner() -> None:
    record = registered(declaration()).records["p"]
    record_followups(record, {"change": {"id": "c1", "key": "CHG1", "state": "closed"},
                              "tasks": [{"id": "t1", "key": "TASK1", "state": "closed"},
                                        {"id": "t2", "title": "RCA", "state": "new"},
                                        {"id": "t3", "state": "canceled"}]}, NOW)
    assert record.followup == FollowUp(followed_at=NOW, change_state="closed", change_key="CHG1",
                                       review_tasks=ReviewCounts(done=2, total=3), review_open=["RCA"],
                                       tasks={"t1": ReviewTaskReading(key="TASK1", state="closed", done_at=NOW),
                                              "t2": ReviewTaskReading(state="new"),
                                              "t3": ReviewTaskReading(state="canceled", done_at=NOW)})
    record_followups(record, None, NOW + timedelta(minutes=15))
    assert record.followup.review_tasks == ReviewCounts(done=0, total=0) and record.followup.change_state == "closed"
    assert record.followup.review_open == [] and record.followup.followed_at == NOW + timedelta(minutes=15)


def test_a_review_task_keeps_the_time_it_was_first_read_back_done() -> None:
    record = registered(declaration()).records["p"]
    later, latest = NOW + timedelta(minutes=15), NOW + timedelta(minutes=30)
    record_followups(record, {"change": None, "tasks": [{"id": "t1", "state": "new"}]}, NOW)
    record_followups(record, {"change": None, "tasks": [{"id": "t1", "state": "closed"}]}, later)
    record_followups(record, {"change": None, "tasks": [{"id": "t1", "state": "closed"}]}, latest)
    assert record.followup.tasks["t1"].done_at == later
    record_followups(record, {"change": None, "tasks": [{"id": "t1", "state": "in_progress"}]}, latest)
    assert record.followup.tasks["t1"].done_at is None, "reopened: no longer done"


def _decide(registry: Registry, major: str, at: datetime, now: datetime, mi: str = "p") -> None:
    registry.refresh([ticket(mi, major=major, updated_at=at)], RULES, now)


def test_a_proposal_a_human_accepts_is_recorded_with_its_time_and_rule() -> None:
    registry = registered(declaration())
    _decide(registry, "proposed", NOW, NOW + timedelta(minutes=1))
    assert registry.get("p").decisions == [], "our own proposal read back"  # type: ignore[union-attr]
    accepted_at, seen = NOW + timedelta(minutes=7), NOW + timedelta(minutes=8)
    _decide(registry, "accepted", accepted_at, seen)
    _decide(registry, "accepted", accepted_at, seen + timedelta(minutes=1))
    assert registry.get("p").decisions == [HumanDecision(  # type: ignore[union-attr]
        verdict="accepted", at=accepted_at, seen_at=seen, rule="service-surge", mode="propose", was="proposed")]


@pytest.mark.parametrize("verdict", ["rejected", "canceled"])
def test_a_proposal_a_human_rejects_is_recorded(verdict: str) -> None:
    registry = registered(declaration())
    _decide(registry, "proposed", NOW, NOW)
    _decide(registry, verdict, NOW + timedelta(minutes=3), NOW + timedelta(minutes=4))
    record = registry.get("p")
    assert record is not None and record.status == "rejected"
    assert [(d.verdict, d.was, d.at) for d in record.decisions] == [(verdict, "proposed", NOW + timedelta(minutes=3))]


def test_a_human_accepting_before_the_first_read_back_is_still_a_decision() -> None:
    registry = registered(declaration())
    _decide(registry, "accepted", NOW + timedelta(minutes=1), NOW + timedelta(minutes=2))
    assert [(d.verdict, d.was) for d in registry.get("p").decisions] == [("accepted", None)]  # type: ignore[union-attr]


def test_an_automatic_declaration_read_back_is_no_decision_but_its_cancellation_is() -> None:
    decl = declaration()
    registry = registered(dataclasses.replace(decl, mode="accept"))
    _decide(registry, "accepted", NOW, NOW)
    assert registry.get("p").decisions == []  # type: ignore[union-attr]
    _decide(registry, "canceled", NOW + timedelta(hours=1), NOW + timedelta(hours=1))
    _decide(registry, "accepted", NOW + timedelta(hours=2), NOW + timedelta(hours=2))
    assert [(d.verdict, d.mode) for d in registry.get("p").decisions] == [  # type: ignore[union-attr]
        ("canceled", "accept"), ("accepted", "accept")], "put back by a person after the cancellation"


def test_a_verdict_on_an_incident_rebuilt_from_its_marker_takes_the_rules_mode() -> None:
    registry = Registry()
    lost = ticket("m", major="rejected", service="web-shop", marker=marker_for("service-surge", "m"), updated_at=NOW)
    registry.refresh([lost], RULES, NOW + timedelta(minutes=1))
    assert [(d.verdict, d.mode, d.was) for d in registry.records["m"].decisions] == [("rejected", "propose", None)]


def test_a_record_kept_before_decisions_were_recorded_still_loads() -> None:
    old = registered(declaration()).records["p"].model_dump(mode="json")
    del old["decisions"]
    del old["followup"]["tasks"]
    record = MIRecord.model_validate(old)
    assert record.decisions == [] and record.followup.tasks == {}
    assert MIRecord.from_json(record.to_json()) == record
