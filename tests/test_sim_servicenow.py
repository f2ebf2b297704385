"""The ServiceNow simulator over real HTTP, checked against the facts in shared/reference/servicenow.md."""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import pysnow
import pytest
import requests

from connector.sim.base import SimServer
from connector.sim.servicenow import INCIDENT_FIELDS, ServiceNowSim

T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=timezone.utc)
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


class FakeClock:
    """A settable clock for the simulator."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Api:
    """A started simulator with an authenticated session."""

    sim: ServiceNowSim
    server: SimServer
    session: requests.Session

    @property
    def url(self) -> str:
        return self.server.url

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(self.url + path, params=params)

    def post(self, path: str, body: Any, **kwargs: Any) -> requests.Response:
        return self.session.post(self.url + path, json=body, **kwargs)

    def patch(self, path: str, body: Any, **kwargs: Any) -> requests.Response:
        return self.session.patch(self.url + path, json=body, **kwargs)

    def results(self, table: str, **params: Any) -> list[dict[str, Any]]:
        response = self.get(f"/api/now/table/{table}", **params)
        assert response.status_code == 200, response.text
        rows: list[dict[str, Any]] = response.json()["result"]
        return rows


_servers: list[SimServer] = []


@pytest.fixture(scope="module", autouse=True)
def _stop_servers_together() -> Iterator[None]:
    # Each SimServer.stop() waits for a poll interval; stopping them all in parallel keeps the module fast.
    yield
    threads = [threading.Thread(target=server.stop) for server in _servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _servers.clear()


def start(sim: ServiceNowSim) -> Api:
    server = sim.server().start()
    _servers.append(server)
    session = requests.Session()
    session.auth = (sim.user, sim.password)
    session.headers["Accept"] = "application/json"
    return Api(sim, server, session)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def api(clock: FakeClock) -> Iterator[Api]:
    started = start(ServiceNowSim(clock=clock))
    yield started
    started.session.close()


def incidents(api: Api, query: str, fields: str = "number") -> list[str]:
    return [row["number"] for row in api.results("incident", sysparm_query=query, sysparm_fields=fields)]


# -- records ---------------------------------------------------------------------------------------


def test_post_creates_incident_with_defaults_location_and_string_values(api: Api) -> None:
    response = api.post("/api/now/table/incident", {"short_description": "Mail down", "impact": 1, "urgency": 2})
    assert response.status_code == 201
    record = response.json()["result"]
    assert response.headers["Location"] == f"{api.url}/api/now/table/incident/{record['sys_id']}"
    assert re.fullmatch(r"[0-9a-f]{32}", record["sys_id"])
    assert record["number"] == "INC0010001"
    assert (record["state"], record["impact"], record["urgency"], record["priority"]) == ("1", "1", "2", "2")
    assert (record["active"], record["major_incident_state"], record["sys_mod_count"]) == ("true", "", "0")
    assert record["opened_at"] == record["sys_created_on"] == "2024-05-01 10:00:00"
    assert record["sys_created_by"] == record["sys_updated_by"] == "admin"
    assert all(isinstance(value, str) for value in record.values())


def test_default_priority_follows_documented_matrix(api: Api) -> None:
    assert api.sim.insert("incident", {})["priority"] == "4"
    assert api.sim.insert("incident", {"impact": "2", "urgency": "1"})["priority"] == "2"
    assert api.sim.insert("incident", {"impact": "1", "urgency": "1", "priority": "3"})["priority"] == "3"


def test_numbers_and_defaults_per_table(api: Api) -> None:
    assert api.sim.insert("incident", {})["number"] == "INC0010001"
    assert api.sim.insert("incident", {})["number"] == "INC0010002"
    change = api.sim.insert("change_request", {})
    assert (change["number"], change["state"]) == ("CHG0010001", "-5")
    task = api.sim.insert("incident_task", {})
    assert (task["number"], task["state"]) == ("TASK0010001", "1")
    assert api.sim.insert("problem", {})["number"] == "PRB0010001"
    assert "number" not in api.sim.insert("sys_user", {"user_name": "jane"})


def test_get_by_sys_id_and_unknown_sys_id_is_404(api: Api) -> None:
    record = api.sim.insert("incident", {"short_description": "VPN"})
    assert api.get(f"/api/now/table/incident/{record['sys_id']}").json()["result"]["short_description"] == "VPN"
    missing = api.get("/api/now/table/incident/" + "0" * 32)
    assert missing.status_code == 404
    assert missing.json() == {"error": {"message": "No Record found", "detail":
                                        "Record doesn't exist or ACL restricts the record retrieval"},
                              "status": "failure"}


def test_v1_empty_list_is_404(api: Api) -> None:
    response = api.get("/api/now/v1/table/incident", sysparm_query="number=INC404")
    assert response.status_code == 404
    assert response.json() == {"error": {"message": "No Record found", "detail": "Records matching query not found. "
                                         "Check query parameter or offset parameter"}, "status": "failure"}


@pytest.mark.parametrize("path", ["/api/now/table/incident", "/api/now/v2/table/incident"])
def test_v2_and_unversioned_empty_list_is_200(api: Api, path: str) -> None:
    response = api.get(path, sysparm_query="number=INC404")
    assert (response.status_code, response.json()) == (200, {"result": []})


def test_patch_and_put_return_full_record_and_bump_mod_count(api: Api, clock: FakeClock) -> None:
    sys_id = api.sim.insert("incident", {"short_description": "DB slow"})["sys_id"]
    clock.advance(5)
    patched = api.patch(f"/api/now/table/incident/{sys_id}", {"urgency": "1"}).json()["result"]
    assert (patched["urgency"], patched["priority"], patched["short_description"]) == ("1", "3", "DB slow")
    assert (patched["sys_mod_count"], patched["sys_updated_on"]) == ("1", "2024-05-01 10:00:05")
    put = api.session.put(f"{api.url}/api/now/table/incident/{sys_id}", json={"state": "2"})
    assert put.status_code == 200
    assert (put.json()["result"]["state"], put.json()["result"]["sys_mod_count"]) == ("2", "2")


def test_update_that_changes_nothing_is_not_saved(api: Api, clock: FakeClock) -> None:
    sys_id = api.sim.insert("incident", {"short_description": "same"})["sys_id"]
    clock.advance(10)
    record = api.patch(f"/api/now/table/incident/{sys_id}", {"short_description": "same"}).json()["result"]
    assert (record["sys_mod_count"], record["sys_updated_on"]) == ("0", "2024-05-01 10:00:00")


def test_sys_fields_are_not_writable_over_rest(api: Api) -> None:
    record = api.post("/api/now/table/incident", {"sys_created_on": "2000-01-01 00:00:00",
                                                  "sys_mod_count": "9"}).json()["result"]
    assert (record["sys_created_on"], record["sys_mod_count"]) == ("2024-05-01 10:00:00", "0")


def test_delete_returns_204_without_body_then_404(api: Api) -> None:
    sys_id = api.sim.insert("incident", {})["sys_id"]
    response = api.session.delete(f"{api.url}/api/now/table/incident/{sys_id}")
    assert (response.status_code, response.content) == (204, b"")
    assert api.sim.get("incident", sys_id) is None
    assert api.session.delete(f"{api.url}/api/now/table/incident/{sys_id}").status_code == 404


def test_no_response_body_header_suppresses_write_body(api: Api) -> None:
    response = api.post("/api/now/table/incident", {"short_description": "quiet"},
                        headers={"X-no-response-body": "true"})
    assert (response.status_code, response.content) == (201, b"")
    assert api.sim.records("incident")[0]["short_description"] == "quiet"


def test_generic_tables_accept_any_field_and_read_omitted_fields_as_empty(api: Api) -> None:
    api.post("/api/now/table/u_war_room", {"u_bridge": "https://meet/1"})
    api.post("/api/now/table/u_war_room", {"u_topic": "DB"})
    rows = api.results("u_war_room")
    assert [(row["u_bridge"], row["u_topic"]) for row in rows] == [("https://meet/1", ""), ("", "DB")]


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/api/now/table/incident/0123"),
    ("DELETE", "/api/now/table/incident"),
    ("PATCH", "/api/now/table/incident"),
])
def test_unsupported_method_is_405(api: Api, method: str, path: str) -> None:
    response = api.session.request(method, api.url + path, json={})
    assert response.status_code == 405
    assert response.json()["status"] == "failure"


def test_unknown_path_is_400(api: Api) -> None:
    response = api.get("/api/now/tables/incident")
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Requested URI does not represent any resource"


def test_invalid_json_body_is_400(api: Api) -> None:
    response = api.session.post(api.url + "/api/now/table/incident", data="{nope",
                                headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["status"] == "failure"


def test_non_json_accept_header_is_406(api: Api) -> None:
    assert api.session.get(api.url + "/api/now/table/incident", headers={"Accept": "text/xml"}).status_code == 406


# -- auth ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", [None, ("admin", "wrong"), ("mallory", "admin")], ids=["missing", "password", "user"])
def test_auth_failures_are_401_in_servicenow_format(api: Api, auth: tuple[str, str] | None) -> None:
    response = requests.get(api.url + "/api/now/table/incident", auth=auth)
    assert response.status_code == 401
    assert response.json() == {"error": {"message": "User Not Authenticated",
                                         "detail": "Required to provide Auth information"}, "status": "failure"}


def test_sim_control_endpoints_need_no_auth(api: Api) -> None:
    assert requests.get(api.url + "/__sim/requests").status_code == 200


def test_oauth_password_grant_token_is_accepted_until_it_expires(api: Api, clock: FakeClock) -> None:
    form = {"grant_type": "password", "client_id": "c", "client_secret": "s", "username": "admin",
            "password": "admin"}
    token = requests.post(api.url + "/oauth_token.do", data=form).json()
    assert (token["token_type"], token["expires_in"], token["scope"]) == ("Bearer", 1799, "useraccount")
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert requests.get(api.url + "/api/now/table/incident", headers=bearer).status_code == 200
    clock.advance(1800)
    assert requests.get(api.url + "/api/now/table/incident", headers=bearer).status_code == 401
    refreshed = requests.post(api.url + "/oauth_token.do",
                              data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}).json()
    assert requests.get(api.url + "/api/now/table/incident",
                        headers={"Authorization": f"Bearer {refreshed['access_token']}"}).status_code == 200
    assert requests.post(api.url + "/oauth_token.do", data={**form, "password": "x"}).status_code == 401


# -- encoded queries -------------------------------------------------------------------------------


@pytest.fixture
def seeded(api: Api) -> Api:
    for state, mis, priority, text in [("1", "", "1", "Email outage EU"), ("2", "accepted", "2", "Email slow"),
                                       ("6", "proposed", "3", "VPN down"), ("1", "", "4", "Printer jam"),
                                       ("7", "rejected", "5", "email bounce")]:
        api.sim.insert("incident", {"state": state, "major_incident_state": mis, "priority": priority,
                                    "short_description": text})
    return api


def test_not_equal_excludes_empty_values(seeded: Api) -> None:
    assert incidents(seeded, "major_incident_state!=accepted") == ["INC0010003", "INC0010005"]
    assert incidents(seeded, "major_incident_stateISEMPTY^ORmajor_incident_state!=accepted") == [
        "INC0010001", "INC0010003", "INC0010004", "INC0010005"]
    assert incidents(seeded, "major_incident_state=^ORmajor_incident_state!=accepted") == [
        "INC0010001", "INC0010003", "INC0010004", "INC0010005"]


def test_or_binds_to_the_previous_condition(seeded: Api) -> None:
    assert incidents(seeded, "state=1^priority=4^ORpriority=2") == ["INC0010004"]
    assert incidents(seeded, "priority=4^ORpriority=2^state=1") == ["INC0010004"]


def test_nq_groups_are_ored(seeded: Api) -> None:
    assert incidents(seeded, "state=1^priority=1^NQstate=7") == ["INC0010001", "INC0010005"]


@pytest.mark.parametrize(("query", "expected"), [
    ("stateIN1,2", ["INC0010001", "INC0010002", "INC0010004"]),
    ("stateNOT IN1,2", ["INC0010003", "INC0010005"]),
    ("short_descriptionLIKEemail", ["INC0010001", "INC0010002", "INC0010005"]),
    ("short_descriptionNOT LIKEemail", ["INC0010003", "INC0010004"]),
    ("short_descriptionSTARTSWITHEmail", ["INC0010001", "INC0010002", "INC0010005"]),
    ("short_descriptionENDSWITHdown", ["INC0010003"]),
    ("major_incident_stateISNOTEMPTY", ["INC0010002", "INC0010003", "INC0010005"]),
    ("priority<=2", ["INC0010001", "INC0010002"]),
    ("priority>3", ["INC0010004", "INC0010005"]),
    ("priorityBETWEEN2@4", ["INC0010002", "INC0010003", "INC0010004"]),
], ids=lambda value: value if isinstance(value, str) else "")
def test_query_operators(seeded: Api, query: str, expected: list[str]) -> None:
    assert incidents(seeded, query) == expected


def test_numeric_compare_when_both_sides_are_integers(api: Api) -> None:
    for count in ("9", "10", "100"):
        api.sim.insert("incident", {"reassignment_count": count})
    assert incidents(api, "reassignment_count>9") == ["INC0010002", "INC0010003"]
    assert incidents(api, "ORDERBYDESCreassignment_count") == ["INC0010003", "INC0010002", "INC0010001"]


def test_date_comparisons_accept_plain_utc_and_date_generate(api: Api) -> None:
    api.sim.insert("incident", {"sys_created_on": "2024-05-01 09:59:59"})
    api.sim.insert("incident", {"sys_created_on": "2024-05-01 10:00:00"})
    assert incidents(api, "sys_updated_on>=2024-05-01 10:00:00") == ["INC0010002"]
    assert incidents(api, "sys_updated_on<javascript:gs.dateGenerate('2024-05-01','10:00:00')") == ["INC0010001"]


def test_orderby_multiple_fields_and_desc_is_stable(seeded: Api) -> None:
    assert incidents(seeded, "ORDERBYstate^ORDERBYDESCpriority") == [
        "INC0010004", "INC0010001", "INC0010002", "INC0010003", "INC0010005"]


def test_unknown_field_in_query_is_ignored(seeded: Api) -> None:
    assert len(incidents(seeded, "u_typo=1^state=1")) == 2
    strict = start(ServiceNowSim(strict_query=True))
    strict.sim.insert("incident", {})
    assert strict.results("incident", sysparm_query="u_typo=1") == []


def test_plain_name_value_params_filter(seeded: Api) -> None:
    rows = seeded.results("incident", state="1", sysparm_fields="number")
    assert rows == [{"number": "INC0010001"}, {"number": "INC0010004"}]


def test_dot_walked_query_and_fields(api: Api) -> None:
    group = api.sim.insert("sys_user_group", {"name": "Network"})
    api.sim.insert("incident", {"assignment_group": group["sys_id"]})
    api.sim.insert("incident", {})
    rows = api.results("incident", sysparm_query="assignment_group.name=Network",
                       sysparm_fields="number,assignment_group.name")
    assert rows == [{"number": "INC0010001", "assignment_group.name": "Network"}]
    change = api.sim.insert("change_request", {})
    api.sim.insert("incident_task", {"parent": change["sys_id"]})
    [task] = api.results("incident_task", sysparm_fields="parent.number")
    assert task == {"parent.number": "CHG0010001"}


# -- paging and fields -----------------------------------------------------------------------------


def test_sysparm_fields_selects_known_fields_and_sys_id_only_when_asked(seeded: Api) -> None:
    rows = seeded.results("incident", sysparm_fields="number,state,u_nope", sysparm_limit=1)
    assert rows == [{"number": "INC0010001", "state": "1"}]
    assert "sys_id" in seeded.results("incident", sysparm_limit=1)[0]


def test_x_total_count_counts_matches_before_paging(seeded: Api) -> None:
    response = seeded.get("/api/now/table/incident", sysparm_query="state=1^ORstate=2", sysparm_limit=2,
                          sysparm_offset=1)
    assert response.headers["X-Total-Count"] == "3"
    assert [row["number"] for row in response.json()["result"]] == ["INC0010002", "INC0010004"]


def test_link_header_next_page(seeded: Api) -> None:
    response = seeded.get("/api/now/v2/table/incident", sysparm_query="ORDERBYnumber", sysparm_limit=2,
                          sysparm_fields="number")
    assert set(response.links) == {"first", "next", "last"}
    numbers = [row["number"] for row in response.json()["result"]]
    while "next" in response.links:
        response = seeded.session.get(response.links["next"]["url"])
        numbers += [row["number"] for row in response.json()["result"]]
    assert numbers == [f"INC001000{n}" for n in range(1, 6)]
    assert set(response.links) == {"first", "prev", "last"}
    assert "sysparm_query=ORDERBYnumber" in response.links["first"]["url"]
    assert "/api/now/v2/table/incident?" in response.links["first"]["url"]


def test_no_link_header_when_everything_fits_or_suppressed(seeded: Api) -> None:
    assert "Link" not in seeded.get("/api/now/table/incident", sysparm_limit=5).headers
    assert "Link" not in seeded.get("/api/now/table/incident", sysparm_limit=2,
                                    sysparm_suppress_pagination_header="true").headers


def test_keyset_nq_query_pages_in_order(api: Api, clock: FakeClock) -> None:
    for index in range(23):
        api.sim.insert("incident", {"short_description": f"storm {index}"})
        if index % 4 == 3:
            clock.advance(1)  # several rows share each second, as on a busy instance
    expected = [(row["sys_updated_on"], row["sys_id"]) for row in api.sim.records("incident")]
    expected.sort()
    seen: list[tuple[str, str]] = []
    query = "active=true^ORDERBYsys_updated_on^ORDERBYsys_id"
    while True:
        page = api.results("incident", sysparm_query=query, sysparm_limit=5,
                           sysparm_fields="sys_id,sys_updated_on")
        if not page:
            break
        seen += [(row["sys_updated_on"], row["sys_id"]) for row in page]
        last_ts, last_id = seen[-1]
        query = (f"active=true^sys_updated_on>{last_ts}^NQactive=true^sys_updated_on={last_ts}"
                 f"^sys_id>{last_id}^ORDERBYsys_updated_on^ORDERBYsys_id")
    assert seen == expected


def test_python_style_boolean_params_and_empty_view_are_accepted(seeded: Api) -> None:
    response = seeded.session.get(
        seeded.url + "/api/now/table/incident?sysparm_query=state%3D6&sysparm_limit=10000&sysparm_offset=0"
        "&sysparm_display_value=False&sysparm_suppress_pagination_header=False"
        "&sysparm_exclude_reference_link=True&sysparm_view=&sysparm_fields=")
    assert response.status_code == 200
    [row] = response.json()["result"]
    assert row["number"] == "INC0010003" and "sys_id" in row


def test_readable_hides_rows_after_paging_like_acls(clock: FakeClock) -> None:
    api = start(ServiceNowSim(clock=clock, readable=lambda table, row: row["state"] != "1"))
    for state in ("1", "1", "2"):
        api.sim.insert("incident", {"state": state})
    response = api.get("/api/now/table/incident", sysparm_limit=2)
    assert (response.json()["result"], response.headers["X-Total-Count"]) == ([], "3")
    assert "next" in response.links


# -- references, display values, journal -----------------------------------------------------------


def test_reference_fields_are_links_unless_excluded(api: Api) -> None:
    user = api.sim.insert("sys_user", {"name": "Jane Doe", "user_name": "jane"})
    api.sim.insert("incident", {"caller_id": user["sys_id"]})
    [linked] = api.results("incident", sysparm_fields="caller_id,assigned_to")
    assert linked == {"caller_id": {"link": f"{api.url}/api/now/table/sys_user/{user['sys_id']}",
                                    "value": user["sys_id"]}, "assigned_to": ""}
    [plain] = api.results("incident", sysparm_fields="caller_id", sysparm_exclude_reference_link="true")
    assert plain == {"caller_id": user["sys_id"]}


def test_display_value_true_and_all(api: Api) -> None:
    user = api.sim.insert("sys_user", {"name": "Jane Doe"})
    api.sim.insert("incident", {"caller_id": user["sys_id"], "state": "2"})
    [shown] = api.results("incident", sysparm_fields="state,caller_id", sysparm_display_value="true",
                          sysparm_exclude_reference_link="true")
    assert shown == {"state": "In Progress", "caller_id": "Jane Doe"}
    [both] = api.results("incident", sysparm_fields="state,caller_id", sysparm_display_value="all")
    assert both["state"] == {"display_value": "In Progress", "value": "2"}
    assert both["caller_id"]["display_value"] == "Jane Doe" and both["caller_id"]["value"] == user["sys_id"]


def test_journal_fields_read_back_empty_and_land_in_sys_journal_field(api: Api, clock: FakeClock) -> None:
    created = api.post("/api/now/table/incident", {"work_notes": "first note"}).json()["result"]
    sys_id = created["sys_id"]
    clock.advance(60)
    patched = api.patch(f"/api/now/table/incident/{sys_id}", {"comments": "customer update",
                                                             "work_notes": "second note"}).json()["result"]
    assert (created["work_notes"], patched["work_notes"], patched["comments"]) == ("", "", "")
    assert patched["sys_mod_count"] == "1"
    rows = api.results("sys_journal_field", sysparm_query=f"element_id={sys_id}^element=work_notes"
                                                          "^ORDERBYDESCsys_created_on")
    assert [(row["value"], row["name"], row["sys_created_on"], row["sys_created_by"]) for row in rows] == [
        ("second note", "incident", "2024-05-01 10:01:00", "admin"),
        ("first note", "incident", "2024-05-01 10:00:00", "admin")]
    assert [row["value"] for row in api.sim.journal(sys_id, "comments")] == ["customer update"]


def test_unknown_incident_field_is_ignored_on_write(clock: FakeClock) -> None:
    fields = [name for name in INCIDENT_FIELDS if name != "u_mim_stage"]
    api = start(ServiceNowSim(clock=clock, incident_fields=fields))
    created = api.post("/api/now/table/incident", {"u_mim_stage": "Containment", "short_description": "x"})
    assert created.status_code == 201
    record = created.json()["result"]
    assert "u_mim_stage" not in record and record["short_description"] == "x"
    patched = api.patch(f"/api/now/table/incident/{record['sys_id']}", {"u_mim_stage": "Resolution"})
    assert patched.status_code == 200 and patched.json()["result"]["sys_mod_count"] == "0"
    assert "u_mim_stage" not in api.sim.get("incident", record["sys_id"])  # type: ignore[operator]


def test_sys_dictionary_lists_incident_fields(clock: FakeClock) -> None:
    fields = [name for name in INCIDENT_FIELDS if name != "u_mim_stage"]
    for sim, has_stage in ((ServiceNowSim(clock=clock), True), (ServiceNowSim(clock=clock, incident_fields=fields),
                                                                 False)):
        api = start(sim)
        rows = api.results("sys_dictionary", sysparm_query="name=incident^internal_type!=collection",
                           sysparm_fields="element,column_label,internal_type,reference")
        elements = {row["element"]: row for row in rows}
        assert ("u_mim_stage" in elements) is has_stage
        assert elements["parent_incident"]["internal_type"] == "reference"
        assert elements["major_incident_state"]["internal_type"] == "string"


# -- MIM lifecycle ---------------------------------------------------------------------------------


def make_family(api: Api) -> tuple[str, list[str]]:
    parent = api.sim.insert("incident", {"short_description": "MI", "major_incident_state": "accepted"})["sys_id"]
    children = [api.sim.insert("incident", {"parent_incident": parent, "state": state})["sys_id"]
                for state in ("1", "2", "7")]
    return parent, children


def test_parent_resolve_cascades_to_children(api: Api, clock: FakeClock) -> None:
    parent, (new, in_progress, closed) = make_family(api)
    clock.advance(30)
    api.patch(f"/api/now/table/incident/{parent}", {"state": "6", "close_code": "Solution provided",
                                                    "close_notes": "Rolled back"})
    for child in (new, in_progress):
        record = api.sim.get("incident", child)
        assert record is not None
        assert (record["state"], record["close_code"], record["close_notes"], record["resolved_at"]) == (
            "6", "Solution provided", "Rolled back", "2024-05-01 10:00:30")
    assert api.sim.get("incident", closed)["state"] == "7"  # type: ignore[index]
    assert api.sim.get("incident", parent)["resolved_at"] == "2024-05-01 10:00:30"  # type: ignore[index]


def test_parent_close_does_not_cascade(api: Api, clock: FakeClock) -> None:
    parent, (new, _, _) = make_family(api)
    clock.advance(30)
    closed = api.sim.update("incident", parent, {"state": "7"})
    assert (closed["closed_at"], closed["active"]) == ("2024-05-01 10:00:30", "false")
    assert api.sim.get("incident", new)["state"] == "1"  # type: ignore[index]


def test_cascade_can_be_turned_off(clock: FakeClock) -> None:
    api = start(ServiceNowSim(clock=clock, cascade_resolve=False))
    parent, (new, _, _) = make_family(api)
    api.sim.update("incident", parent, {"state": "6"})
    assert api.sim.get("incident", new)["state"] == "1"  # type: ignore[index]


def test_python_update_acts_like_a_ui_edit(api: Api, clock: FakeClock) -> None:
    sys_id = api.sim.insert("incident", {"sys_created_on": "2024-05-01 09:00:00"})["sys_id"]
    assert api.sim.get("incident", sys_id)["opened_at"] == "2024-05-01 09:00:00"  # type: ignore[index]
    clock.advance(90)
    record = api.sim.update("incident", sys_id, {"impact": "1", "sys_updated_by": "jane", "work_notes": "call"})
    assert (record["priority"], record["sys_updated_on"], record["sys_updated_by"], record["sys_mod_count"]) == (
        "3", "2024-05-01 10:01:30", "jane", "1")
    assert api.sim.journal(sys_id)[0]["sys_created_by"] == "jane"
    with pytest.raises(KeyError):
        api.sim.update("incident", "0" * 32, {})


# -- batch and stats -------------------------------------------------------------------------------


def batch_item(item_id: str, method: str, url: str, body: Any = None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": item_id, "method": method, "url": url,
                            "headers": [{"name": "Content-Type", "value": "application/json"},
                                        {"name": "Accept", "value": "application/json"}]}
    if body is not None:
        item["body"] = base64.b64encode(json.dumps(body).encode()).decode()
    return item


def test_batch_api_patches_many_records_in_one_request(api: Api) -> None:
    parent = api.sim.insert("incident", {})["sys_id"]
    children = [api.sim.insert("incident", {})["sys_id"] for _ in range(3)]
    api.server.clear_requests()
    items = [batch_item(str(n), "PATCH", f"/api/now/table/incident/{child}?sysparm_fields=parent_incident",
                        {"parent_incident": parent, "work_notes": "linked"}) for n, child in enumerate(children)]
    items.append(batch_item("get", "GET", "/api/now/table/incident/" + "f" * 32))
    response = api.post("/api/now/v1/batch", {"batch_request_id": "b1", "rest_requests": items})
    assert response.status_code == 200
    result = response.json()
    assert (result["batch_request_id"], result["unserviced_requests"]) == ("b1", [])
    served = {item["id"]: item for item in result["serviced_requests"]}
    assert [served[str(n)]["status_code"] for n in range(3)] == [200, 200, 200]
    assert json.loads(base64.b64decode(served["0"]["body"]))["result"]["parent_incident"]["value"] == parent
    assert (served["get"]["status_code"], served["get"]["status_text"]) == (404, "Not Found")
    assert {"execution_time", "headers"} <= set(served["0"])
    assert all(api.sim.get("incident", child)["parent_incident"] == parent for child in children)  # type: ignore[index]
    assert len(api.sim.journal(children[0], "work_notes")) == 1
    assert api.server.requests() == [{"method": "POST", "path": "/api/now/v1/batch", "status": 200}]


def test_batch_items_over_the_limit_are_unserviced(clock: FakeClock) -> None:
    api = start(ServiceNowSim(clock=clock, batch_max_items=2))
    items = [batch_item(f"i{n}", "POST", "/api/now/table/incident", {"short_description": str(n)})
             for n in range(3)]
    result = api.post("/api/now/v1/batch", {"batch_request_id": "1", "rest_requests": items}).json()
    assert [item["status_code"] for item in result["serviced_requests"]] == [201, 201]
    assert result["unserviced_requests"] == ["i2"]
    assert len(api.sim.records("incident")) == 2


def test_batch_api_can_be_disabled(clock: FakeClock) -> None:
    api = start(ServiceNowSim(clock=clock, batch_enabled=False))
    response = api.post("/api/now/v1/batch", {"batch_request_id": "1", "rest_requests": []})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Requested URI does not represent any resource"


def test_stats_api_counts_and_groups(seeded: Api) -> None:
    count = seeded.get("/api/now/stats/incident", sysparm_query="state=1", sysparm_count="true").json()
    assert count == {"result": {"stats": {"count": "2"}}}
    grouped = seeded.get("/api/now/stats/incident", sysparm_count="true", sysparm_group_by="state").json()
    assert {row["groupby_fields"][0]["value"]: row["stats"]["count"] for row in grouped["result"]} == {
        "1": "2", "2": "1", "6": "1", "7": "1"}


# -- faults and the request log --------------------------------------------------------------------


def test_429_fault_has_retry_after(api: Api) -> None:
    api.server.add_fault("429", count=1, retry_after=7, match="GET /api/now/table/incident")
    limited = api.get("/api/now/table/incident")
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "7")
    assert limited.json()["error"]["message"] == "Rate limit exceeded"
    assert api.get("/api/now/table/incident").status_code == 200


def test_fault_happens_before_auth_and_drop_closes_connection(api: Api) -> None:
    api.server.add_fault("503", count=1)
    assert requests.get(api.url + "/api/now/table/incident").status_code == 503
    api.server.add_fault("drop", count=1)
    with pytest.raises(requests.ConnectionError):
        requests.get(api.url + "/api/now/table/incident", auth=("admin", "admin"))


def test_request_log_counts_and_clears(api: Api) -> None:
    api.get("/api/now/table/incident")
    api.post("/api/now/table/incident", {})
    requests.get(api.url + "/api/now/table/incident")
    log = requests.get(api.url + "/__sim/requests").json()
    assert [(entry["method"], entry["status"]) for entry in log] == [("GET", 200), ("POST", 201), ("GET", 401)]
    assert requests.delete(api.url + "/__sim/requests").status_code == 204
    assert requests.get(api.url + "/__sim/requests").json() == []


def test_concurrent_posts_get_unique_numbers(api: Api) -> None:
    def create() -> None:
        with requests.Session() as session:
            for _ in range(10):
                session.post(api.url + "/api/now/table/incident", json={}, auth=("admin", "admin"))

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    numbers = {record["number"] for record in api.sim.records("incident")}
    assert len(numbers) == 40


# -- pysnow ----------------------------------------------------------------------------------------


def test_pysnow_reads_and_writes_through_the_simulator(seeded: Api) -> None:
    client = pysnow.Client(host=f"127.0.0.1:{seeded.server.port}", user="admin", password="admin", use_ssl=False)
    incident = client.resource(api_path="/table/incident")
    rows = list(incident.get(query="state=1^ORDERBYDESCpriority", limit=10).all())
    assert [row["number"] for row in rows] == ["INC0010004", "INC0010001"]
    assert TIMESTAMP.fullmatch(rows[0]["sys_updated_on"])
    created = incident.create(payload={"short_description": "from pysnow"}).one()
    assert created["number"] == "INC0010006"
    updated = incident.update(query={"number": "INC0010006"}, payload={"state": "2"})
    assert updated["state"] == "2"


# -- the API user, its roles and field ACLs ----------------------------------------------------------


def test_the_api_user_and_its_roles_are_in_the_directory(clock: FakeClock) -> None:
    api = start(ServiceNowSim(user="mim.integration", password="pw", clock=clock, roles=["itil"]))
    [user] = api.results("sys_user", sysparm_query="user_name=mim.integration", sysparm_fields="sys_id,user_name")
    roles = api.results("sys_user_has_role", sysparm_query="user.user_name=mim.integration",
                        sysparm_fields="role.name")
    assert [row["role.name"] for row in roles] == ["itil"]
    api.sim.grant("major_incident_manager")
    assert api.sim.roles == {"itil", "major_incident_manager"}
    assert user["user_name"] == "mim.integration"


def test_the_default_user_is_an_admin(api: Api) -> None:
    assert api.sim.roles == {"admin"}


@pytest.mark.parametrize("state", ["accepted", "rejected", "canceled"])
def test_a_major_incident_state_past_proposed_needs_the_manager_role_and_is_kept_silently(
        clock: FakeClock, state: str) -> None:
    # reference §6 "Field ACLs on the Table API": the request succeeds and the field keeps its old value
    api = start(ServiceNowSim(clock=clock, roles=["itil"]))
    sys_id = api.sim.insert("incident", {"short_description": "Checkout down"})["sys_id"]
    proposed = api.patch(f"/api/now/table/incident/{sys_id}", {"major_incident_state": "proposed"})
    assert proposed.status_code == 200 and proposed.json()["result"]["major_incident_state"] == "proposed"
    refused = api.patch(f"/api/now/table/incident/{sys_id}", {"major_incident_state": state, "urgency": "1"})
    assert refused.status_code == 200
    assert refused.json()["result"]["major_incident_state"] == "proposed"  # kept
    assert refused.json()["result"]["urgency"] == "1"  # the rest of the write landed
    created = api.post("/api/now/table/incident", {"short_description": "MI", "major_incident_state": state})
    assert created.status_code == 201 and created.json()["result"]["major_incident_state"] == ""
    api.sim.grant("major_incident_manager")
    granted = api.patch(f"/api/now/table/incident/{sys_id}", {"major_incident_state": state})
    assert granted.json()["result"]["major_incident_state"] == state


def test_a_field_hidden_by_an_acl_is_absent_unwritable_and_dropped_from_queries(clock: FakeClock) -> None:
    # reference §2.1 (ACL-hidden fields are absent), §2.3 and §6 (query terms on them are dropped silently)
    api = start(ServiceNowSim(clock=clock, hidden_fields={"incident_task": ["correlation_id"]}))
    api.sim.insert("incident_task", {"short_description": "Someone else's task", "correlation_id": "other"})
    rows = api.results("incident_task", sysparm_query="correlation_id=mim-123456789012",
                       sysparm_fields="sys_id,correlation_id,short_description")
    assert [row["short_description"] for row in rows] == ["Someone else's task"]
    assert "correlation_id" not in rows[0]
    assert "correlation_id" not in api.results("incident_task")[0]
    created = api.post("/api/now/table/incident_task", {"short_description": "Ours", "correlation_id": "mim-x"})
    assert created.status_code == 201
    assert api.sim.get("incident_task", created.json()["result"]["sys_id"])["correlation_id"] == ""  # type: ignore[index]


def test_people_and_groups_can_be_added_to_the_directory(api: Api) -> None:
    api.sim.add_people(["alice.martin", "alice.martin", "bob.schneider"], ["major-incident-team"])
    api.sim.add_people(["alice.martin"], ["major-incident-team"])
    users = api.results("sys_user", sysparm_query="user_nameINalice.martin,bob.schneider",
                        sysparm_fields="user_name,name")
    assert sorted((u["user_name"], u["name"]) for u in users) == [("alice.martin", "Alice Martin"),
                                                                   ("bob.schneider", "Bob Schneider")]
    assert [g["name"] for g in api.results("sys_user_group", sysparm_fields="name")] == ["major-incident-team"]


# -- choice lists and the resolution data policy ----------------------------------------------------


def test_sys_choice_holds_todays_resolution_codes(api: Api) -> None:
    rows = api.results("sys_choice", sysparm_query="name=incident^element=close_code^inactive=false",
                       sysparm_fields="value")
    assert {row["value"] for row in rows} == {
        "Solution provided", "Workaround provided", "Resolved by caller", "Resolved by change", "Resolved by problem",
        "Resolved by request", "Known error", "Duplicate", "User error", "No resolution provided"}


@pytest.mark.parametrize("fields", [{"close_code": "Solved (Permanently)", "close_notes": "Rolled back"},
                                    {"close_notes": "Rolled back"}], ids=["code-of-an-older-release", "no-code"])
def test_resolving_without_a_valid_resolution_code_is_a_data_policy_exception(api: Api, fields: dict[str, str]) -> None:
    # reference §6: "403 Data Policy Exception ... mandatory: Resolution code"
    sys_id = api.sim.insert("incident", {"short_description": "Mail down"})["sys_id"]
    refused = api.patch(f"/api/now/table/incident/{sys_id}", {"state": "6", **fields})
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["message"] == "Operation Failed"
    assert error["detail"].startswith("Data Policy Exception") and error["detail"].endswith("mandatory: Resolution code")
    assert api.sim.get("incident", sys_id)["state"] == "1"  # type: ignore[index]  # nothing saved
    resolved = api.patch(f"/api/now/table/incident/{sys_id}", {"state": "6", "close_code": "Solution provided",
                                                               "close_notes": "Rolled back"})
    assert resolved.status_code == 200 and resolved.json()["result"]["close_code"] == "Solution provided"


def test_an_invalid_choice_is_stored_empty_and_a_deactivated_one_is_refused(api: Api) -> None:
    sys_id = api.sim.insert("incident", {"short_description": "Mail down"})["sys_id"]
    answer = api.patch(f"/api/now/table/incident/{sys_id}", {"urgency": "9", "impact": "1"})
    assert answer.status_code == 200 and (answer.json()["result"]["urgency"], answer.json()["result"]["impact"]) == ("", "1")
    [duplicate] = [row for row in api.sim.records("sys_choice") if row["value"] == "Duplicate"]
    api.sim.update("sys_choice", duplicate["sys_id"], {"inactive": "true"})
    refused = api.patch(f"/api/now/table/incident/{sys_id}", {"state": "6", "close_code": "Duplicate",
                                                              "close_notes": "Same as INC0010001"})
    assert refused.status_code == 403


def test_the_data_policy_also_refuses_a_resolved_record_losing_its_notes_and_runs_in_batches(api: Api) -> None:
    sys_id = api.sim.insert("incident", {"state": "6", "close_code": "Solution provided", "close_notes": "x"})["sys_id"]
    assert api.patch(f"/api/now/table/incident/{sys_id}", {"work_notes": "still fine"}).status_code == 200
    assert api.patch(f"/api/now/table/incident/{sys_id}", {"close_notes": ""}).status_code == 403
    item = batch_item("1", "PATCH", f"/api/now/table/incident/{sys_id}", {"close_code": "Solved (Permanently)"})
    result = api.post("/api/now/v1/batch", {"batch_request_id": "1", "rest_requests": [item]}).json()
    assert result["serviced_requests"][0]["status_code"] == 403


# -- faults inside a batch and lost answers ------------------------------------------------------------


def test_faults_apply_to_batch_items_with_their_retry_after(api: Api) -> None:
    records = [api.sim.insert("incident", {})["sys_id"] for _ in range(2)]
    api.server.add_fault("429", count=1, retry_after=4, match=f"PATCH /api/now/table/incident/{records[0]}")
    items = [batch_item(str(n), "PATCH", f"/api/now/table/incident/{sys_id}", {"urgency": "1"})
             for n, sys_id in enumerate(records)]
    result = api.post("/api/now/v1/batch", {"batch_request_id": "1", "rest_requests": items}).json()
    served = {item["id"]: item for item in result["serviced_requests"]}
    assert (served["0"]["status_code"], served["1"]["status_code"]) == (429, 200)
    assert {"name": "Retry-After", "value": "4"} in served["0"]["headers"]
    assert api.sim.get("incident", records[0])["urgency"] == "3"  # type: ignore[index]  # refused: not carried out
    assert api.sim.get("incident", records[1])["urgency"] == "1"  # type: ignore[index]


def test_an_item_fault_after_the_work_lands_but_answers_an_error(api: Api) -> None:
    sys_id = api.sim.insert("incident", {})["sys_id"]
    api.server.add_fault("500", count=1, after=True, match="PATCH /api/now/table/incident/")
    item = batch_item("1", "PATCH", f"/api/now/table/incident/{sys_id}", {"work_notes": "once"})
    result = api.post("/api/now/v1/batch", {"batch_request_id": "1", "rest_requests": [item]}).json()
    assert result["serviced_requests"][0]["status_code"] == 500
    assert [row["value"] for row in api.sim.journal(sys_id)] == ["once"]


def test_a_connection_fault_never_fires_for_a_batch_item(api: Api) -> None:
    sys_id = api.sim.insert("incident", {})["sys_id"]
    api.server.add_fault("drop", count=1, match="PATCH /api/now/table/incident/")
    item = batch_item("1", "PATCH", f"/api/now/table/incident/{sys_id}", {"urgency": "2"})
    result = api.post("/api/now/v1/batch", {"batch_request_id": "1", "rest_requests": [item]}).json()
    assert result["serviced_requests"][0]["status_code"] == 200
    assert api.server.faults[0].fired == 0


def test_a_lost_answer_after_the_write_and_a_body_cut_short(api: Api) -> None:
    sys_id = api.sim.insert("incident", {})["sys_id"]
    api.server.add_fault("504", count=1, after=True, match="PATCH")
    assert api.patch(f"/api/now/table/incident/{sys_id}", {"urgency": "1"}).status_code == 504
    assert api.sim.get("incident", sys_id)["urgency"] == "1"  # type: ignore[index]
    api.server.add_fault("cut", count=1, match="GET /api/now/table/incident")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        api.get("/api/now/table/incident")
    assert api.get("/api/now/table/incident").status_code == 200


# -- reference fields ----------------------------------------------------------------------------------


def test_a_reference_to_no_record_is_stored_empty_and_a_sys_id_is_kept(api: Api) -> None:
    group = api.sim.insert("sys_user_group", {"name": "major-incident-team"})["sys_id"]
    sys_id = api.sim.insert("incident", {"assignment_group": group})["sys_id"]
    by_name = api.patch(f"/api/now/table/incident/{sys_id}", {"assignment_group": "major-incident-team"})
    assert by_name.status_code == 200  # the write succeeds ...
    assert api.sim.get("incident", sys_id)["assignment_group"] == ""  # type: ignore[index]  # ... and blanks the group
    assert api.patch(f"/api/now/table/incident/{sys_id}", {"assignment_group": group}).status_code == 200
    assert api.sim.get("incident", sys_id)["assignment_group"] == group  # type: ignore[index]
    # a table the simulator holds nothing of (services here) is not checked
    assert api.post("/api/now/table/incident", {"business_service": "web-shop"}).json()["result"][
        "business_service"]["value"] == "web-shop"
