"""One contract, every platform: the same story against each simulator through its real adapter over
real HTTP. An adapter that drifts from the contract the sync cycle relies on fails here."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Iterator

import pytest

from connector.core.actions import AddNote, DeclareMajor, LinkChild
from connector.core.mapping import load_mapping
from connector.detection.markers import marker_for
from connector.platforms.base import Platform, Watermark
from connector.tools.demo import DemoClock, JiraSite, ServiceNowSite, Site

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["servicenow", "jira"])
def site(request: pytest.FixtureRequest) -> Iterator[tuple[Site, Platform, DemoClock]]:
    clock = DemoClock()
    made: Site = ServiceNowSite(clock) if request.param == "servicenow" else JiraSite(clock)
    mapping, errors = load_mapping(ROOT / "mappings" / f"{request.param}.yaml")
    assert mapping is not None, errors
    platform = made.platform(mapping)
    yield made, platform, clock
    platform.close()
    made.stop()


def _tickets(platform: Platform, clock: DemoClock) -> dict[str, object]:
    return {t.id: t for t in (platform.to_ticket(r) for r in platform.fetch_changed(None, clock() - timedelta(hours=2)))}


def test_fetch_maps_tickets_to_canonical_fields(site) -> None:
    made, platform, clock = site
    platform.discover(None)
    opened = clock() - timedelta(minutes=5)
    tid = made.open_ticket("web-shop", "ann", "Checkout fails", opened)
    again = made.open_ticket("web-shop", "ann", "Checkout still fails", opened)
    other = made.open_ticket("web-shop", "bob", "Checkout fails for me too", opened)
    tickets = _tickets(platform, clock)
    ticket = tickets[tid]
    assert ticket.service == "web-shop"
    # the caller is the platform's stable id for the person (a Jira accountId, a ServiceNow user)
    assert ticket.caller and tickets[again].caller == ticket.caller != tickets[other].caller
    assert ticket.title == "Checkout fails"
    assert ticket.state == "new" and ticket.major == "none" and ticket.parent is None
    assert abs((ticket.opened_at - opened).total_seconds()) < 61


def test_a_quiet_poll_is_one_request(site) -> None:
    made, platform, clock = site
    discovery = platform.discover(None)
    made.open_ticket("vpn", "bob", "VPN down", clock() - timedelta(minutes=1))
    rows = list(platform.fetch_changed(None, clock() - timedelta(hours=1)))
    last = platform.to_ticket(rows[-1])
    clock.advance(minutes=1)
    platform.discover(discovery)
    before = platform.requests_sent
    list(platform.fetch_changed(Watermark(last.updated_at, last.id), clock()))
    quiet = platform.requests_sent - before
    assert quiet == 1


def test_declare_link_and_note_are_idempotent_when_uncertain(site) -> None:
    made, platform, clock = site
    platform.discover(None)
    parent = made.open_ticket("web-shop", "ann", "Checkout fails", clock() - timedelta(minutes=6))
    child = made.open_ticket("web-shop", "ben", "Checkout fails too", clock() - timedelta(minutes=5))
    actions = [
        DeclareMajor(key=f"declare:{parent}", target=parent, rule="service-surge", mode="propose",
                     marker=marker_for("service-surge")),
        LinkChild(key=f"link:{child}:{parent}", target=child, parent=parent, rule="service-surge"),
        AddNote(key=f"note:{parent}:declared", target=parent, rule="service-surge", text="Declared by service-surge"),
    ]
    first = platform.apply(actions, lambda t: t)
    assert [r.status for r in first] == ["applied"] * 3, [r.detail for r in first]
    clock.advance(minutes=1)
    again = platform.apply(actions, lambda t: t, uncertain=frozenset(a.key for a in actions))
    assert all(r.status in ("applied", "skipped") for r in again)
    tickets = _tickets(platform, clock)
    assert tickets[parent].major in ("proposed", "accepted")
    assert tickets[parent].marker == "mim:service-surge"
    assert tickets[child].parent == parent
    assert sum("Declared by service-surge" in n for n in made.notes(parent)) == 1
    marked = [platform.to_ticket(r).id for r in platform.fetch_marked()]
    assert parent in marked and child not in marked
