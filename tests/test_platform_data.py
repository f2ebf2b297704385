"""Platform data is not trusted: a record dated in the future never moves the watermark (it is reported, and
doctor shows it), and a record id the platform cannot have issued is never used or written."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

import cli
from connector.core.mapping import MappingError, load_mapping
from connector.job.store import StateStore
from connector.job.watermark import FUTURE_SKEW, advance, trusted_start
from connector.platforms.base import Watermark
from connector.sim.servicenow import ServiceNowSim
from tests.shipped import servicenow_sim

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "data", "data-password-123"


class Site:
    """The ServiceNow simulator and ``mim sync --once --json`` against it, on the real clock."""

    def __init__(self, sim: ServiceNowSim, url: str, home: Path) -> None:
        self.sim, self.url, self.home = sim, url, home
        self.now = datetime.now(timezone.utc).replace(microsecond=0)

    @property
    def env(self) -> dict[str, str]:
        return {"MIM_PLATFORM": "servicenow", "MIM_SERVICENOW_URL": self.url, "MIM_SERVICENOW_USERNAME": USER,
                "MIM_SERVICENOW_PASSWORD": PASSWORD, "MIM_STATE": str(self.home / "state.sqlite")}

    def incident(self, opened: datetime, caller: str, **fields: str) -> dict[str, str]:
        stamp = opened.strftime("%Y-%m-%d %H:%M:%S")
        values = {"short_description": "Checkout fails", "business_service": "web-shop", "caller_id": caller,
                  "opened_at": stamp, "sys_created_on": stamp, "sys_updated_on": stamp, **fields}
        return self.sim.insert("incident", values)

    def storm(self, size: int, start: datetime, prefix: str) -> list[dict[str, str]]:
        return [self.incident(start + timedelta(seconds=40 * i), f"{prefix}{i}") for i in range(size)]

    def sync(self, *args: str) -> tuple[dict, str]:
        result = CliRunner().invoke(cli.main, ["sync", "--once", "--json", *args], env=self.env)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout), result.stderr


@pytest.fixture()
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    for name in [n for n in os.environ if n.startswith("MIM_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    sim = servicenow_sim(user=USER, password=PASSWORD)
    server = sim.server().start()
    yield Site(sim, server.url, tmp_path)
    server.stop()


# -- timestamps in the future ----------------------------------------------------------------------------------


def test_a_record_updated_in_2099_does_not_blind_the_connector(site: Site) -> None:
    bogus = site.incident(site.now - timedelta(hours=2), "clock-broken",
                          sys_updated_on="2099-01-01 00:00:00", number="INC0099999")

    first, err = site.sync()
    assert first["future_records"] == 1
    assert "INC0099999: updated_at 2099-01-01T00:00:00+00:00 is in the future" in err
    with StateStore(site.home / "state.sqlite", "servicenow") as store:
        mark = store.watermark()
    assert mark is not None and mark.updated_at <= datetime.now(timezone.utc) + FUTURE_SKEW

    storm = site.storm(6, datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5), "caller")
    second, _ = site.sync()

    assert second["tickets_read"] >= 6, "the storm after the bogus record is read"
    assert [d["parent"] for d in second["declarations"]] == [storm[0]["sys_id"]]
    assert second["future_records"] == 1, "the bogus record is read and reported again, not lost"
    assert site.sim.get("incident", bogus["sys_id"])["parent_incident"] == ""


def test_a_watermark_already_in_the_future_is_not_used(site: Site) -> None:
    site.sync()
    with StateStore(site.home / "state.sqlite", "servicenow") as store:
        store.set_watermark(Watermark(datetime(2099, 1, 1, tzinfo=timezone.utc), "f" * 32))
    storm = site.storm(6, site.now - timedelta(minutes=6), "caller")

    report, err = site.sync()

    assert [d["parent"] for d in report["declarations"]] == [storm[0]["sys_id"]]
    assert "the stored watermark 2099-01-01T00:00:00+00:00 is in the future" in err
    with StateStore(site.home / "state.sqlite", "servicenow") as store:
        assert store.watermark().updated_at < datetime(2099, 1, 1, tzinfo=timezone.utc)


def test_doctor_shows_records_dated_in_the_future(site: Site) -> None:
    site.incident(site.now - timedelta(hours=1), "clock-broken", sys_updated_on="2099-01-01 00:00:00",
                  number="INC0099999")

    result = CliRunner().invoke(cli.main, ["doctor"], env=site.env)

    assert result.exit_code == 1, result.output
    assert "FAIL record times: 1 record dated beyond now + 5m: INC0099999: updated_at 2099-01-01" in result.output
    assert "fix: correct" in result.output


def test_the_watermark_ignores_times_beyond_the_skew_and_keeps_those_within() -> None:
    from connector.core.ticket import Ticket

    now = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
    near = Ticket(id="a" * 32, opened_at=now, updated_at=now + FUTURE_SKEW - timedelta(seconds=1))
    far = Ticket(id="b" * 32, opened_at=now, updated_at=now + FUTURE_SKEW + timedelta(seconds=1))

    assert advance([near, far], None, now) == Watermark(near.updated_at, near.id)
    assert advance([far], Watermark(now, "c" * 32), now) == Watermark(now, "c" * 32)
    assert trusted_start(Watermark(far.updated_at, far.id), now)[0] is None
    assert trusted_start(Watermark(near.updated_at, near.id), now)[0] == Watermark(near.updated_at, near.id)


# -- ids -------------------------------------------------------------------------------------------------------


def test_a_record_with_id_12345_is_reported_and_never_becomes_a_major_incident(site: Site) -> None:
    start = site.now - timedelta(minutes=10)
    phantom = site.incident(start - timedelta(minutes=1), "first-caller", sys_id="12345")
    storm = site.storm(6, start, "caller")

    report, err = site.sync()

    assert [d["parent"] for d in report["declarations"]] == [storm[0]["sys_id"]]
    assert "skipped malformed record" in err and "'12345' is not a servicenow record id" in err
    assert all(r["parent_incident"] != "12345" for r in site.sim.records("incident"))
    assert site.sim.get("incident", phantom["sys_id"])["major_incident_state"] == ""


def test_a_reference_to_an_id_the_platform_cannot_have_issued_is_not_trusted() -> None:
    mapping, errors = load_mapping(ROOT / "mappings" / "servicenow.yaml")
    assert mapping is not None and not errors
    record = {"sys_id": "a" * 32, "number": "INC0010001", "opened_at": "2026-03-02 09:00:00"}

    assert mapping.to_ticket(record).id == "a" * 32
    for bad in ({"sys_id": "12345"}, {"sys_id": "A" * 32}, {"parent_incident": "12345"}, {"rfc": "../x"},
                {"sys_id": "a" * 32 + "\n"}):
        with pytest.raises(MappingError, match="is not a servicenow record id"):
            mapping.to_ticket({**record, **bad})
    assert mapping.to_ticket({**record, "sys_id": "12345"}, export=True).id == "12345"  # a history export's own ids


def test_jira_issue_ids_are_numbers() -> None:
    mapping, errors = load_mapping(ROOT / "mappings" / "jira.yaml")
    assert mapping is not None and not errors
    issue = {"id": "10001", "key": "ITSM-1", "fields": {"created": "2026-03-02T09:00:00.000+0000"}}

    assert mapping.to_ticket(issue).id == "10001"
    for bad in ("ITSM-1", "0", "-1", "10001 OR 1=1", "1" * 20):
        with pytest.raises(MappingError, match="is not a jira record id"):
            mapping.to_ticket({**issue, "id": bad})
    with pytest.raises(MappingError, match="is not a jira record id"):
        mapping.to_ticket({**issue, "_parent": "ITSM-9"})


def test_a_mapping_may_set_its_own_id_pattern(tmp_path: Path) -> None:
    text = (ROOT / "mappings" / "servicenow.yaml").read_text(encoding="utf-8") + "id_pattern: '[0-9a-z]{8,32}'\n"
    (tmp_path / "servicenow.yaml").write_text(text, encoding="utf-8")
    mapping, errors = load_mapping(tmp_path / "servicenow.yaml")
    assert mapping is not None and not errors

    assert mapping.to_ticket({"sys_id": "inc00001", "opened_at": "2026-03-02 09:00:00"}).id == "inc00001"
    (tmp_path / "servicenow.yaml").write_text(text.replace("[0-9a-z]{8,32}", "x*"), encoding="utf-8")
    assert "must not match an empty id" in str(load_mapping(tmp_path / "servicenow.yaml")[1][0])


def test_mim_run_logs_a_record_dated_in_the_future(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from connector.core.settings import Settings
    from connector.detection.rules import load_rules
    from connector.job.assembly import Job
    from connector.job.logs import setup_logging
    from connector.job.runner import StopFlag, run_loop
    from connector.job.webhooks import WebhookNotifier
    from connector.process.processfile import ProcessFile
    from tests.fakes import Clock, FakePlatform

    setup_logging("json")
    clock = Clock(datetime(2026, 3, 2, 10, tzinfo=timezone.utc))
    platform = FakePlatform(clock)
    platform.add(id="f" * 32, key="INC0099999", updated_at=datetime(2099, 1, 1, tzinfo=timezone.utc))
    job = Job(Settings(), load_rules([ROOT / "rules"]).rules, ProcessFile(version=1), platform.mapping, platform,
              StateStore(tmp_path / "state.sqlite", "servicenow"), WebhookNotifier({}))
    try:
        run_loop(job, timedelta(seconds=1), StopFlag(), max_cycles=1, clock=clock)
    finally:
        job.close()

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    warned = [line for line in lines if line["message"] == "record dated in the future"]
    assert len(warned) == 1 and warned[0]["detail"].startswith("INC0099999: updated_at 2099-01-01")
