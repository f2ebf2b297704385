"""Tests of the Jira simulator, driven over real HTTP.

Every simulator built by the ``site`` factory records its exchanges; when a test ends, every
``/rest/api/3`` response (and every request the simulator accepted) is validated against Atlassian's
OpenAPI document by ``tests/jira_openapi.py`` -- so a simulator that drifts from Jira fails the suite.
"""

from __future__ import annotations

import email.utils
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

import pytest
import requests

from connector.sim.base import SimServer
from connector.sim.jira import SEARCH_REMOVED, JiraSim, adf_from_text, jira_time
from tests import jira_openapi
from tests.jira_site import contract  # noqa: F401  (a fixture: whether the OpenAPI document is there)

EMAIL = "admin@example.com"
TOKEN = "s3cret-token"
UTC = timezone.utc
T0 = datetime(2024, 1, 15, 15, 0, 0, tzinfo=UTC)  # 10:00 in New York (EST, UTC-5)


class Clock:
    """A controllable clock for the simulator."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Site:
    """A running simulator plus an authenticated ``requests`` session."""

    sim: JiraSim
    server: SimServer
    http: requests.Session

    def url(self, path: str) -> str:
        return self.server.url + path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.get(self.url(path), **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.post(self.url(path), **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.put(self.url(path), **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.delete(self.url(path), **kwargs)

    def search(self, jql: str, **body: Any) -> dict[str, Any]:
        response = self.post("/rest/api/3/search/jql", json={"jql": jql, **body})
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        return page

    def keys(self, jql: str, **body: Any) -> list[str]:
        body.setdefault("fields", ["summary"])
        return [issue["key"] for issue in self.search(jql, **body)["issues"]]


@pytest.fixture
def site(contract: bool) -> Iterator[Callable[..., Site]]:
    """Factory of running simulators; validates every recorded v3 exchange at teardown."""
    made: list[Site] = []

    def make(**kwargs: Any) -> Site:
        kwargs.setdefault("clock", Clock())
        kwargs.setdefault("email", EMAIL)
        kwargs.setdefault("token", TOKEN)
        sim = JiraSim(record_exchanges=True, **kwargs)
        server = sim.server().start()
        http = requests.Session()
        if sim.flavour == "cloud":
            http.auth = (EMAIL, TOKEN)
        else:
            http.headers["Authorization"] = f"Bearer {TOKEN}"
        made.append(Site(sim, server, http))
        return made[-1]

    yield make
    findings: list[str] = []
    for item in made:
        item.http.close()
        item.server.stop()
        if contract and item.sim.flavour == "cloud":  # the spec describes Jira Cloud only
            findings.extend(jira_openapi.validate_exchanges(item.sim.exchanges))
    if findings:
        pytest.fail("simulator drifted from the Jira OpenAPI spec:\n" + "\n".join(findings[:40]))


def adf(text: str) -> dict[str, Any]:
    return adf_from_text(text)


def create(s: Site, summary: str = "Checkout down", **fields: Any) -> dict[str, Any]:
    body_fields = {"project": {"key": "ITSM"}, "issuetype": {"name": "Incident"}, "summary": summary, **fields}
    response = s.post("/rest/api/3/issue", json={"fields": body_fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


# ---------------------------------------------------------------------------------------------- search


def test_old_search_endpoint_answers_410(site: Callable[..., Site]) -> None:
    s = site()
    expected = {"errorMessages": [SEARCH_REMOVED], "errors": {}}
    for version in (2, 3):
        got = s.get(f"/rest/api/{version}/search", params={"jql": "project = ITSM"})
        assert got.status_code == 410 and got.json() == expected
        got = s.post(f"/rest/api/{version}/search", json={"jql": "project = ITSM"})
        assert got.status_code == 410 and got.json() == expected
    assert "CHANGE-2046" in SEARCH_REMOVED and SEARCH_REMOVED.startswith("The requested API has been removed.")


def test_next_page_token_paging_has_no_total(site: Callable[..., Site]) -> None:
    s = site()
    for n in range(7):
        s.sim.create_issue({"summary": f"issue {n}"})
    seen: list[str] = []
    pages = 0
    token = None
    while True:
        body: dict[str, Any] = {"jql": "project = ITSM ORDER BY key ASC", "maxResults": 3}
        if token:
            body["nextPageToken"] = token
        page = s.post("/rest/api/3/search/jql", json=body).json()
        pages += 1
        assert "total" not in page and "startAt" not in page and "maxResults" not in page
        assert all(issue == {"id": issue["id"]} for issue in page["issues"])  # default fields: id only
        seen += [issue["id"] for issue in page["issues"]]
        token = page.get("nextPageToken")
        if page["isLast"]:
            assert token is None
            break
        assert token and not token.isdigit()  # opaque, not an offset
    assert pages == 3
    assert seen == [str(10001 + n) for n in range(7)]
    # GET with a token works the same way and a token from another query is refused.
    first = s.get("/rest/api/3/search/jql", params={"jql": "project = ITSM", "maxResults": 2}).json()
    assert first["isLast"] is False
    again = s.get("/rest/api/3/search/jql", params={"jql": "project = ITSM", "maxResults": 2,
                                                     "nextPageToken": first["nextPageToken"]}).json()
    assert len(again["issues"]) == 2
    wrong = s.get("/rest/api/3/search/jql", params={"jql": "status = Open", "nextPageToken": first["nextPageToken"]})
    assert wrong.status_code == 400


def test_search_fields_properties_and_caps(site: Callable[..., Site]) -> None:
    s = site()
    key = create(s, labels=["mim"])["key"]
    s.put(f"/rest/api/3/issue/{key}/properties/mim.connector", json={"majorKey": key})
    page = s.get("/rest/api/3/search/jql", params={"jql": "project = ITSM", "fields": "summary,labels",
                                                   "properties": "mim.connector", "expand": "names"}).json()
    issue = page["issues"][0]
    assert set(issue["fields"]) == {"summary", "labels"}
    assert issue["properties"] == {"mim.connector": {"majorKey": key}}
    assert page["names"] == {"summary": "Summary", "labels": "Labels"}
    many = [f"p{n}" for n in range(6)]
    assert s.post("/rest/api/3/search/jql", json={"jql": "project = ITSM", "properties": many}).status_code == 400
    assert s.post("/rest/api/3/search/jql", json={"jql": "project = ITSM",
                                                  "reconcileIssues": list(range(51))}).status_code == 400
    for n in range(120):
        s.sim.create_issue({"summary": f"bulk {n}"})
    assert len(s.search("project = ITSM", maxResults=1000, fields=["summary"])["issues"]) == 100
    assert len(s.search("project = ITSM", maxResults=1000)["issues"]) == 121  # id-only pages go up to 5000


def test_search_post_body_is_strict(site: Callable[..., Site], contract: bool) -> None:
    s = site()
    response = s.post("/rest/api/3/search/jql", json={"jql": "project = ITSM", "failFast": True})
    assert response.status_code == 400
    # The spec agrees: failFast is a GET query parameter only.
    if contract:
        findings = jira_openapi.validate_request("POST", "/rest/api/3/search/jql", None,
                                                 {"jql": "project = ITSM", "failFast": True})
        assert any("failFast" in f for f in findings)


def test_unbounded_jql_is_rejected_on_search_jql(site: Callable[..., Site]) -> None:
    s = site()
    for jql in ("ORDER BY key DESC", ""):
        response = s.post("/rest/api/3/search/jql", json={"jql": jql})
        assert response.status_code == 400
        assert response.json()["errorMessages"][0].startswith("Unbounded JQL")


def test_search_approximate_count(site: Callable[..., Site]) -> None:
    s = site()
    for n in range(3):
        create(s, f"n{n}")
    assert s.post("/rest/api/3/search/approximate-count", json={"jql": "project = ITSM"}).json() == {"count": 3}


# ---------------------------------------------------------------------------------------------- JQL


def test_quoted_date_is_read_in_user_time_zone(site: Callable[..., Site]) -> None:
    s = site(user_time_zone="America/New_York")
    s.sim.create_issue({"summary": "at 15:00 UTC", "created": "2024-01-15T15:00:00Z"})
    assert s.get("/rest/api/3/myself").json()["timeZone"] == "America/New_York"
    # A connector formatting UTC wall time ("12:00") asks for 12:00 New York = 17:00 UTC: the issue is missed.
    assert s.keys('updated >= "2024/01/15 12:00"') == []
    assert s.keys('updated >= "2024-01-15 12:00"') == []
    # The same instant written in the user's zone finds it.
    assert s.keys('updated >= "2024/01/15 10:00"') == ["ITSM-1"]
    assert s.keys('updated > "2024/01/15 10:01"') == []
    assert s.keys('created >= "2024-01-15"') == ["ITSM-1"]
    tokyo = site(user_time_zone="Asia/Tokyo")
    tokyo.sim.create_issue({"summary": "at 15:00 UTC", "created": "2024-01-15T15:00:00Z"})
    assert tokyo.keys('updated >= "2024/01/16 00:00"') == ["ITSM-1"]  # 00:00 JST = 15:00 UTC
    assert tokyo.keys('updated >= "2024/01/15 15:00"') == ["ITSM-1"]  # naive UTC reads 06:00 UTC: too early
    assert tokyo.keys('updated >= "2024/01/16 00:01"') == []


def test_epoch_millis_is_exact(site: Callable[..., Site]) -> None:
    s = site()
    s.sim.create_issue({"summary": "ms", "created": "2024-01-15T15:00:00.500Z"})
    ms = int(datetime(2024, 1, 15, 15, 0, 0, 500000, tzinfo=UTC).timestamp() * 1000)
    assert s.keys(f"updated >= {ms}") == ["ITSM-1"]
    assert s.keys(f"updated <= {ms}") == ["ITSM-1"]
    assert s.keys(f"updated > {ms}") == []
    assert s.keys(f"updated >= {ms + 1}") == []
    assert s.sim.issue("ITSM-1")["fields"]["updated"] == "2024-01-15T15:00:00.500+0000"


def test_jql_string_escape_keeps_quote_and_or_inside_one_literal(site: Callable[..., Site]) -> None:
    s = site()
    tricky = 'Payments "EU" OR Cards'
    s.sim.create_issue({"summary": "tricky", "components": [tricky]})
    s.sim.create_issue({"summary": "plain", "components": ["Cards"]})
    s.sim.create_issue({"summary": "backslash", "components": ["C:\\ops"]})
    assert s.keys('component = "Payments \\"EU\\" OR Cards"') == ["ITSM-1"]
    assert s.keys("component = 'Payments \"EU\" OR Cards'") == ["ITSM-1"]
    assert s.keys('component = Cards') == ["ITSM-2"]
    assert s.keys('component = "C:\\\\ops"') == ["ITSM-3"]
    # A quoted " OR " cannot widen a query: this is one (unknown) status value, not two clauses.
    response = s.post("/rest/api/3/search/jql", json={"jql": 'status = "Open\\" OR status = \\"Closed"'})
    assert response.status_code == 400
    assert 'Open" OR status = "Closed' in response.json()["errorMessages"][0]
    unterminated = s.post("/rest/api/3/search/jql", json={"jql": 'summary ~ "oops'})
    assert unterminated.status_code == 400


def test_jql_operators_fields_and_ordering(site: Callable[..., Site]) -> None:
    s = site()
    s.sim.create_issue({"summary": "db down", "priority": "Highest", "labels": ["db", "p1"], "reporter": "alice",
                        "assignee": "bob", "created": "2024-01-15T10:00:00Z"})
    s.sim.create_issue({"summary": "web slow", "priority": "Low", "labels": ["web"], "issuetype": "Task",
                        "created": "2024-01-15T11:00:00Z"})
    s.sim.create_issue({"summary": "pir", "issuetype": "Post-incident review", "status": "Resolved",
                        "created": "2024-01-15T12:00:00Z"})
    assert s.keys("project = ITSM AND labels = db") == ["ITSM-1"]
    assert s.keys("labels != db") == ["ITSM-2"]  # like Jira, != never matches an empty field
    assert s.keys("labels IS EMPTY") == ["ITSM-3"]
    assert s.keys("labels is not empty ORDER BY key ASC") == ["ITSM-1", "ITSM-2"]
    assert s.keys("labels in (web, p1) ORDER BY created DESC") == ["ITSM-2", "ITSM-1"]
    assert s.keys("labels not in (web) ORDER BY key") == ["ITSM-1"]
    assert s.keys("type = Task OR (issuetype = \"Post-incident review\" AND statusCategory = Done)") == [
        "ITSM-3", "ITSM-2"]
    assert s.keys("priority >= High") == ["ITSM-1"]
    assert s.keys("priority in (Highest, Low) ORDER BY priority DESC") == ["ITSM-1", "ITSM-2"]
    assert s.keys("reporter = alice AND assignee = 5b10ac8d82e05b22cc7d4e03") == ["ITSM-1"]
    assert s.keys("assignee IS EMPTY ORDER BY key ASC") == ["ITSM-2", "ITSM-3"]
    assert s.keys("assignee = EMPTY ORDER BY key ASC") == ["ITSM-2", "ITSM-3"]
    assert s.keys("key in (ITSM-1, ITSM-3) ORDER BY key DESC") == ["ITSM-3", "ITSM-1"]
    assert s.keys("id = 10002") == ["ITSM-2"]
    assert s.keys("key > ITSM-1 AND NOT status = Resolved") == ["ITSM-2"]
    assert s.keys("summary ~ slow") == ["ITSM-2"]
    assert s.keys("status = \"In Progress\"") == []
    assert s.keys("project = ITSM AND created >= -30d ORDER BY updated ASC") == ["ITSM-1", "ITSM-2", "ITSM-3"]
    assert s.keys("created >= -4h ORDER BY created ASC") == ["ITSM-2", "ITSM-3"]  # clock: 15:00 UTC
    for bad in ("foo = bar", "status = Nope", "summary = x", "updated >= \"2024-01-15T10:00:00Z\"",
                "key = ITSM-99", "labels = ", "project = ITSM ORDER BY", "(project = ITSM"):
        response = s.post("/rest/api/3/search/jql", json={"jql": bad})
        assert response.status_code == 400, bad
        assert response.json()["errorMessages"] and response.json()["errors"] == {}


def test_major_incident_field_is_searchable_and_listed(site: Callable[..., Site]) -> None:
    s = site()
    s.sim.create_issue({"summary": "major", "major_incident": True, "customfield_10060": "Containment"})
    s.sim.create_issue({"summary": "minor"})
    fields = {f["id"]: f for f in s.get("/rest/api/3/field").json()}
    assert fields["customfield_10050"]["name"] == "Major incident"
    assert fields["customfield_10050"]["schema"]["custom"] == (
        "com.atlassian.jira.modules.servicemanagement.major-incident-entity:major-incident-entity-field-cftype")
    assert fields["customfield_10060"]["schema"]["custom"].endswith(":textfield")
    assert {"summary", "status", "priority", "components", "labels"} <= set(fields)
    for jql in ("cf[10050] IS NOT EMPTY", "customfield_10050 = MAJOR_INCIDENT", '"Major incident" is not empty',
                'cf[10060] ~ containment'):
        assert s.keys(jql) == ["ITSM-1"], jql
    assert s.keys("cf[10050] IS EMPTY") == ["ITSM-2"]
    assert s.sim.issue("ITSM-1")["fields"]["customfield_10050"] == "MAJOR_INCIDENT"
    s.sim.edit_issue("ITSM-1", {"major_incident": False})
    assert s.sim.issue("ITSM-1")["fields"]["customfield_10050"] is None
    plain = site(major_incident_field=False)
    plain.sim.create_issue({"summary": "x"})
    assert "customfield_10050" not in {f["id"] for f in plain.get("/rest/api/3/field").json()}
    assert "customfield_10050" not in plain.sim.issue("ITSM-1")["fields"]
    assert plain.post("/rest/api/3/search/jql", json={"jql": "cf[10050] is not empty"}).status_code == 400


# ---------------------------------------------------------------------------------------------- lag


def test_search_lag_hides_fresh_issue_unless_reconciled(site: Callable[..., Site]) -> None:
    clock = Clock()
    s = site(clock=clock, search_lag=30)
    created = create(s, "fresh")
    assert s.keys("project = ITSM") == []
    assert s.keys("project = ITSM", reconcileIssues=[int(created["id"])]) == [created["key"]]
    assert s.get(f"/rest/api/3/issue/{created['key']}").status_code == 200  # GET is always fresh
    clock.advance(31)
    assert s.keys("project = ITSM") == [created["key"]]
    # An update is invisible for the lag: search still shows the previous version.
    s.put(f"/rest/api/3/issue/{created['key']}", json={"fields": {"summary": "renamed"}})
    stale = s.search("project = ITSM", fields=["summary"])["issues"][0]["fields"]["summary"]
    assert stale == "fresh"
    assert s.keys("summary ~ renamed") == []
    fresh = s.search("project = ITSM", fields=["summary"], reconcileIssues=[int(created["id"])])
    assert fresh["issues"][0]["fields"]["summary"] == "renamed"
    clock.advance(31)
    assert s.keys("summary ~ renamed") == [created["key"]]


# ---------------------------------------------------------------------------------------------- writes


def test_create_issue_and_validation_errors(site: Callable[..., Site]) -> None:
    s = site()
    made = create(s, "Payments down", description=adf("line one\nline two"), priority={"name": "High"},
                  components=[{"name": "Payments"}], labels=["mim"],
                  reporter={"accountId": "5b10ac8d82e05b22cc7d4e02"}, customfield_10060="Identification")
    assert made["key"] == "ITSM-1" and made["id"] == "10001" and made["self"].endswith("/rest/api/3/issue/10001")
    issue = s.get("/rest/api/3/issue/ITSM-1").json()
    fields = issue["fields"]
    assert fields["priority"]["name"] == "High" and fields["components"][0]["name"] == "Payments"
    assert fields["reporter"]["displayName"] == "Alice Ng" and fields["status"]["statusCategory"]["key"] == "new"
    assert fields["description"]["type"] == "doc" and fields["created"] == jira_time(T0)
    v2 = s.get("/rest/api/2/issue/ITSM-1").json()["fields"]
    assert v2["description"] == "line one\nline two"
    missing = s.post("/rest/api/3/issue", json={"fields": {"project": {"key": "ITSM"}}})
    assert missing.status_code == 400 and set(missing.json()["errors"]) == {"summary", "issuetype"}
    bad_project = s.post("/rest/api/3/issue", json={"fields": {"project": {"key": "NOPE"}, "summary": "x",
                                                               "issuetype": {"id": "10001"}}})
    assert bad_project.status_code == 400 and "project" in bad_project.json()["errors"]
    plain_description = s.post("/rest/api/3/issue", json={"fields": {
        "project": {"key": "ITSM"}, "summary": "x", "issuetype": {"id": "10001"}, "description": "plain"}})
    assert plain_description.status_code == 400 and "description" in plain_description.json()["errors"]
    unknown = s.post("/rest/api/3/issue", json={"fields": {
        "project": {"key": "ITSM"}, "summary": "x", "issuetype": {"id": "10001"}, "customfield_99999": 1}})
    assert unknown.status_code == 400
    only = s.get("/rest/api/3/issue/ITSM-1", params={"fields": "summary,status"}).json()
    assert set(only["fields"]) == {"summary", "status"}
    assert s.get("/rest/api/3/issue/ITSM-404").json() == {
        "errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}}


def test_edit_issue_fields_update_and_conflicts(site: Callable[..., Site]) -> None:
    clock = Clock()
    s = site(clock=clock)
    key = create(s, labels=["old", "keep"])["key"]
    clock.advance(60)
    response = s.put(f"/rest/api/3/issue/{key}", json={
        "fields": {"summary": "new summary", "customfield_10060": "Containment"},
        "update": {"labels": [{"add": "mim"}, {"remove": "old"}]},
        "properties": [{"key": "mim.connector", "value": {"majorKey": key}}]})
    assert response.status_code == 204 and response.content == b""
    fields = s.sim.issue(key)["fields"]
    assert fields["summary"] == "new summary" and fields["labels"] == ["keep", "mim"]
    assert fields["customfield_10060"] == "Containment"
    assert fields["updated"] == jira_time(T0 + timedelta(seconds=60))
    assert s.sim.properties(key) == {"mim.connector": {"majorKey": key}}
    both = s.put(f"/rest/api/3/issue/{key}", json={"fields": {"labels": ["a"]},
                                                    "update": {"labels": [{"add": "b"}]}})
    assert both.status_code == 400 and "labels" in both.json()["errors"]
    assert s.put(f"/rest/api/3/issue/{key}", json={"fields": {"status": {"name": "Closed"}}}).status_code == 400
    assert s.put(f"/rest/api/3/issue/{key}", json={"fields": {"labels": ["has space"]}}).status_code == 400
    assert s.sim.issue(key)["fields"]["labels"] == ["keep", "mim"]  # failed edits change nothing
    returned = s.put(f"/rest/api/3/issue/{key}", params={"returnIssue": "true"},
                     json={"update": {"summary": [{"set": "again"}]}})
    assert returned.status_code == 200 and returned.json()["fields"]["summary"] == "again"


def test_assignee_cloud_uses_account_id_and_rejects_name(site: Callable[..., Site]) -> None:
    s = site()
    key = create(s)["key"]
    assert s.put(f"/rest/api/3/issue/{key}/assignee", json={"accountId": "5b10ac8d82e05b22cc7d4e03"}).status_code == 204
    assert s.sim.issue(key)["fields"]["assignee"]["displayName"] == "Bob Okafor"
    rejected = s.put(f"/rest/api/3/issue/{key}/assignee", json={"name": "bob"})
    assert rejected.status_code == 400
    assert s.put(f"/rest/api/3/issue/{key}/assignee", json={"accountId": None}).status_code == 204
    assert s.sim.issue(key)["fields"]["assignee"] is None
    assert s.put(f"/rest/api/3/issue/{key}/assignee", json={"accountId": "nobody"}).status_code == 404


def test_transitions_workflow(site: Callable[..., Site]) -> None:
    s = site()
    key = create(s)["key"]
    available = s.get(f"/rest/api/3/issue/{key}/transitions").json()["transitions"]
    names = {t["name"]: t for t in available}
    assert {"Start progress", "Resolve", "Cancel"} <= set(names) and "Reopen" not in names
    assert names["Start progress"]["to"]["name"] == "In Progress"
    reopen = s.post(f"/rest/api/3/issue/{key}/transitions", json={"transition": {"id": "51"}})
    assert reopen.status_code == 400
    assert reopen.json()["errorMessages"] == ["Transition id '51' is not valid for this issue."]
    done = s.post(f"/rest/api/3/issue/{key}/transitions", json={
        "transition": {"id": names["Resolve"]["id"]},
        "update": {"comment": [{"add": {"body": adf("Resolved by the connector")}}]}})
    assert done.status_code == 204
    fields = s.sim.issue(key)["fields"]
    assert fields["status"]["name"] == "Resolved" and fields["status"]["statusCategory"]["key"] == "done"
    assert fields["resolutiondate"] is not None and fields["resolution"]["name"] == "Done"
    assert len(s.sim.comments(key)) == 1
    s.sim.edit_issue(key, {"status": "Open"})  # a human may move it anywhere
    assert s.sim.issue(key)["fields"]["resolutiondate"] is None


def test_v3_comment_rejects_plain_string(site: Callable[..., Site]) -> None:
    s = site()
    key = create(s)["key"]
    rejected = s.post(f"/rest/api/3/issue/{key}/comment", json={"body": "plain text"})
    assert rejected.status_code == 400
    assert "Comment body is not valid!" in str(rejected.json())
    ok = s.post(f"/rest/api/3/issue/{key}/comment", json={"body": adf("ADF body")})
    assert ok.status_code == 201 and ok.json()["body"]["type"] == "doc" and ok.json()["jsdPublic"] is True
    v2 = s.post(f"/rest/api/2/issue/{key}/comment", json={"body": "v2 takes a string"})
    assert v2.status_code == 201 and v2.json()["body"] == "v2 takes a string"
    assert s.post(f"/rest/api/2/issue/{key}/comment", json={"body": adf("no")}).status_code == 400
    page = s.get(f"/rest/api/3/issue/{key}/comment").json()
    assert page["total"] == 2 and page["startAt"] == 0 and len(page["comments"]) == 2


def test_internal_comment_uses_sd_public_comment_property(site: Callable[..., Site]) -> None:
    s = site()
    key = create(s)["key"]
    response = s.post(f"/rest/api/3/issue/{key}/comment", params={"expand": "properties"}, json={
        "body": adf("internal note"), "properties": [{"key": "sd.public.comment", "value": {"internal": True}}]})
    assert response.status_code == 201
    assert response.json()["jsdPublic"] is False
    assert response.json()["properties"] == [{"key": "sd.public.comment", "value": {"internal": True}}]
    stored = s.sim.comments(key)[0]
    assert stored["properties"] == [{"key": "sd.public.comment", "value": {"internal": True}}]
    servicedesk = s.post(f"/rest/servicedeskapi/request/{key}/comment", json={"body": "agents only",
                                                                             "public": False})
    assert servicedesk.status_code == 201 and servicedesk.json()["public"] is False
    assert s.sim.comments(key)[1]["jsdPublic"] is False


def test_duplicate_link_is_201_but_stored_once(site: Callable[..., Site]) -> None:
    s = site()
    major, child = create(s, "major")["key"], create(s, "child")["key"]
    body = {"type": {"name": "Problem/Incident"}, "inwardIssue": {"key": major}, "outwardIssue": {"key": child}}
    for _ in range(2):
        response = s.post("/rest/api/3/issueLink", json=body)
        assert response.status_code == 201 and response.content == b""
    assert len(s.sim.links(major)) == 1 and len(s.sim.links(child)) == 1
    unknown_type = s.post("/rest/api/3/issueLink", json={**body, "type": {"name": "Nope"}})
    assert unknown_type.status_code == 404
    missing = s.post("/rest/api/3/issueLink", json={**body, "outwardIssue": {"key": "ITSM-999"}})
    assert missing.status_code == 404


def test_link_direction_major_causes_child(site: Callable[..., Site]) -> None:
    s = site()
    major, child = create(s, "major")["key"], create(s, "child")["key"]
    # "MAJOR causes CHILD": inwardIssue is the subject of the outward phrase.
    s.post("/rest/api/3/issueLink", json={"type": {"name": "Problem/Incident"}, "inwardIssue": {"key": major},
                                          "outwardIssue": {"key": child}})
    major_links = s.get(f"/rest/api/3/issue/{major}", params={"fields": "issuelinks"}).json()["fields"]["issuelinks"]
    child_links = s.get(f"/rest/api/3/issue/{child}", params={"fields": "issuelinks"}).json()["fields"]["issuelinks"]
    assert major_links[0]["type"]["outward"] == "causes" and major_links[0]["outwardIssue"]["key"] == child
    assert "inwardIssue" not in major_links[0]
    assert child_links[0]["type"]["inward"] == "is caused by" and child_links[0]["inwardIssue"]["key"] == major
    assert "outwardIssue" not in child_links[0]
    link_id = major_links[0]["id"]
    full = s.get(f"/rest/api/3/issueLink/{link_id}").json()
    assert full["inwardIssue"]["key"] == major and full["outwardIssue"]["key"] == child
    assert s.delete(f"/rest/api/3/issueLink/{link_id}").status_code == 204
    assert s.sim.links(major) == [] and s.sim.links(child) == []


def test_per_issue_write_limit_413(site: Callable[..., Site]) -> None:
    s = site(per_issue_write_limit=2)
    key, other, third = create(s)["key"], create(s, "b")["key"], create(s, "c")["key"]
    for n in range(2):
        assert s.post(f"/rest/api/3/issue/{key}/comment", json={"body": adf(f"c{n}")}).status_code == 201
    over = s.post(f"/rest/api/3/issue/{key}/comment", json={"body": adf("one too many")})
    assert over.status_code == 413 and over.json()["errorMessages"]
    assert len(s.sim.comments(key)) == 2
    for target in (other, third):
        assert s.post("/rest/api/3/issueLink", json={"type": {"name": "Relates"}, "inwardIssue": {"key": key},
                                                     "outwardIssue": {"key": target}}).status_code == 201
    fourth = create(s, "d")["key"]
    limited = s.post("/rest/api/3/issueLink", json={"type": {"name": "Relates"}, "inwardIssue": {"key": key},
                                                    "outwardIssue": {"key": fourth}})
    assert limited.status_code == 413 and s.sim.links(fourth) == []


def test_entity_properties(site: Callable[..., Site]) -> None:
    s = site()
    key = create(s)["key"]
    path = f"/rest/api/3/issue/{key}/properties/mim.connector"
    assert s.get(path).status_code == 404
    assert s.put(path, json={"majorKey": "ITSM-9"}).status_code == 201
    assert s.put(path, json={"majorKey": "ITSM-1"}).status_code == 200
    assert s.get(path).json() == {"key": "mim.connector", "value": {"majorKey": "ITSM-1"}}
    assert [k["key"] for k in s.get(f"/rest/api/3/issue/{key}/properties").json()["keys"]] == ["mim.connector"]
    issue = s.get(f"/rest/api/3/issue/{key}", params={"properties": "mim.connector", "fields": "summary"}).json()
    assert issue["properties"] == {"mim.connector": {"majorKey": "ITSM-1"}}
    assert s.delete(path).status_code == 204 and s.sim.properties(key) == {}


def test_updated_changes_on_every_write(site: Callable[..., Site]) -> None:
    clock = Clock()
    s = site(clock=clock)
    a, b = create(s, "a")["key"], create(s, "b")["key"]

    def updated(key: str) -> str:
        return str(s.sim.issue(key)["fields"]["updated"])

    steps: list[Callable[[], Any]] = [
        lambda: s.put(f"/rest/api/3/issue/{a}", json={"fields": {"summary": "a2"}}),
        lambda: s.post(f"/rest/api/3/issue/{a}/comment", json={"body": adf("x")}),
        lambda: s.post(f"/rest/api/3/issue/{a}/transitions", json={"transition": {"id": "11"}}),
        lambda: s.put(f"/rest/api/3/issue/{a}/properties/p", json=1),
        lambda: s.put(f"/rest/api/3/issue/{a}/assignee", json={"accountId": "5b10ac8d82e05b22cc7d4e02"}),
    ]
    for step in steps:
        before = updated(a)
        clock.advance(1)
        assert step().status_code < 300
        assert updated(a) > before
    before_a, before_b = updated(a), updated(b)
    clock.advance(1)
    s.post("/rest/api/3/issueLink", json={"type": {"name": "Relates"}, "inwardIssue": {"key": a},
                                          "outwardIssue": {"key": b}})
    assert updated(a) > before_a and updated(b) > before_b


# ---------------------------------------------------------------------------------------------- misc API


def test_metadata_endpoints(site: Callable[..., Site]) -> None:
    s = site(user_time_zone="Europe/Berlin")
    me = s.get("/rest/api/3/myself").json()
    assert me["emailAddress"] == EMAIL and me["timeZone"] == "Europe/Berlin" and me["accountId"]
    info = s.get("/rest/api/3/serverInfo").json()
    assert info["deploymentType"] == "Cloud" and info["serverTime"] == jira_time(T0)
    types = {t["name"]: t for t in s.get("/rest/api/3/issueLinkType").json()["issueLinkTypes"]}
    assert len(types) == 6
    assert (types["Problem/Incident"]["inward"], types["Problem/Incident"]["outward"]) == ("is caused by", "causes")
    issue_types = {t["name"]: t["id"] for t in s.get("/rest/api/3/issuetype").json()}
    assert issue_types == {"[System] Incident": "10001", "[System] Post-incident review": "10002",
                           "[System] Change": "10003", "Task": "10004"}
    users = s.get("/rest/api/3/user/search", params={"query": "ali"}).json()
    assert [u["displayName"] for u in users] == ["Alice Ng"]


def test_missing_or_bad_credentials_answer_401(site: Callable[..., Site]) -> None:
    s = site()
    url = s.url("/rest/api/3/myself")
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, auth=(EMAIL, "wrong"), timeout=5).status_code == 401
    assert requests.get(url, auth=("someone@else", TOKEN), timeout=5).status_code == 401
    bearer = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert bearer.status_code == 401 and bearer.json()["errorMessages"]
    assert requests.get(url, auth=(EMAIL, TOKEN), timeout=5).status_code == 200
    dc = site(flavour="dc")
    dc_url = dc.url("/rest/api/2/myself")
    assert requests.get(dc_url, headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 401
    assert requests.get(dc_url, timeout=5).status_code == 401
    assert requests.get(dc_url, auth=("admin", TOKEN), timeout=5).status_code == 200
    assert requests.get(dc_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).status_code == 200


def test_dc_flavour_uses_start_at_paging(site: Callable[..., Site]) -> None:
    s = site(flavour="dc")
    for n in range(5):
        s.sim.create_issue({"summary": f"dc {n}", "reporter": "alice"})
    first = s.get("/rest/api/2/search", params={"jql": "project = ITSM ORDER BY key ASC", "maxResults": 2}).json()
    assert (first["startAt"], first["maxResults"], first["total"]) == (0, 2, 5)
    assert "nextPageToken" not in first and "isLast" not in first
    assert [i["key"] for i in first["issues"]] == ["ITSM-1", "ITSM-2"]
    assert first["issues"][0]["fields"]["reporter"]["name"] == "alice"  # DC identifies users by name
    last = s.post("/rest/api/2/search", json={"jql": "project = ITSM ORDER BY key ASC", "startAt": 4,
                                              "maxResults": 2}).json()
    assert [i["key"] for i in last["issues"]] == ["ITSM-5"] and last["total"] == 5
    assert s.get("/rest/api/3/myself").status_code == 404
    assert s.get("/rest/api/2/search/jql", params={"jql": "project = ITSM"}).status_code == 404
    assert s.get("/rest/api/2/serverInfo").json()["deploymentType"] != "Cloud"
    me = s.get("/rest/api/2/myself").json()
    assert me["name"] == "admin" and "accountId" not in me
    key = "ITSM-1"
    assert s.put(f"/rest/api/2/issue/{key}/assignee", json={"name": "bob"}).status_code == 204
    assert s.sim.issue(key)["fields"]["assignee"]["name"] == "bob"
    assert s.post(f"/rest/api/2/issue/{key}/comment", json={"body": "wiki *markup*"}).status_code == 201
    assert s.sim.comments(key)[0]["body"] == "wiki *markup*"


def test_incidents_api_major_flag(site: Callable[..., Site]) -> None:
    s = site()
    made = create(s)
    tenant = s.get("/_edge/tenant_info").json()["cloudId"]
    path = f"/jsm/incidents/cloudId/{tenant}/v1/incident/{made['id']}/major"
    assert s.get(path).json() == {"majorIncident": False}
    assert s.post(path, json={"majorIncident": True}).status_code == 204
    assert s.get(path).json() == {"majorIncident": True}
    assert s.sim.issue(made["key"])["fields"]["customfield_10050"] == "MAJOR_INCIDENT"
    assert s.post(path, json={"majorIncident": "yes"}).status_code == 400
    assert s.get(f"/jsm/incidents/cloudId/{tenant}/v1/incident/{made['key']}/major").status_code == 404


def test_rate_limit_fault_looks_like_jira(site: Callable[..., Site]) -> None:
    s = site()
    s.server.add_fault("429", count=1, retry_after=7, match="search/jql")
    limited = s.post("/rest/api/3/search/jql", json={"jql": "project = ITSM"})
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "7" and limited.headers["RateLimit-Reason"] == "jira-burst-based"
    assert "X-RateLimit-Reset" in limited.headers
    assert limited.json() == {"errorMessages": ["Rate limit exceeded."], "errors": {}}
    assert s.post("/rest/api/3/search/jql", json={"jql": "project = ITSM"}).status_code == 200
    assert [e.get("fault") for e in s.sim.exchanges] == ["429", None]
    log = s.get("/__sim/requests").json()
    assert [entry["status"] for entry in log] == [429, 200]


def test_python_side_api(site: Callable[..., Site]) -> None:
    s = site()
    made = s.sim.create_issue({"summary": "seeded", "description": "text", "issuetype": "Incident",
                               "priority": "Highest", "components": ["Payments"], "reporter": "new.person",
                               "labels": ["a"], "created": "2024-01-10T08:00:00Z", "status": "In Progress"})
    assert made["key"] == "ITSM-1" and made["fields"]["reporter"]["displayName"] == "New Person"
    assert made["fields"]["created"] == "2024-01-10T08:00:00.000+0000"
    assert made["fields"]["updated"] == made["fields"]["created"]
    s.sim.edit_issue("ITSM-1", {"labels": ["b"], "status": "Closed"})
    issue = s.sim.issue("ITSM-1")
    assert issue["fields"]["labels"] == ["b"] and issue["fields"]["status"]["name"] == "Closed"
    assert issue["fields"]["updated"] == jira_time(T0)
    with pytest.raises(KeyError):
        s.sim.issue("ITSM-77")


def test_concurrent_writes_are_serialised(site: Callable[..., Site]) -> None:
    s = site()
    key = create(s)["key"]

    def worker(n: int) -> None:
        with requests.Session() as http:
            http.auth = (EMAIL, TOKEN)
            for m in range(5):
                http.post(s.url(f"/rest/api/3/issue/{key}/comment"), json={"body": adf(f"{n}-{m}")}, timeout=5)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    comments = s.sim.comments(key)
    assert len(comments) == 30 and len({c["id"] for c in comments}) == 30


# ---------------------------------------------------------------------------------------------- contract


def test_contract_validator_catches_drift(contract: bool) -> None:
    if not contract:
        pytest.skip("Jira OpenAPI document not available")
    drifted_page = {"issues": [{"id": "1"}], "isLast": True, "total": 1, "startAt": 0}
    findings = jira_openapi.validate_response("POST", "/rest/api/3/search/jql", 200, drifted_page)
    assert any("total" in f for f in findings)
    bad_link = {"id": "1", "fields": {"issuelinks": [{"type": {"name": "Relates"}, "inwardIssue": {"key": "A-1"},
                                                      "outwardIssue": {"key": "A-2"}}]}}
    assert jira_openapi.validate_response("GET", "/rest/api/3/issue/A-1", 200, bad_link)
    assert jira_openapi.validate_request("POST", "/rest/api/3/issueLink", None,
                                         {"type": {"name": "Relates"}, "inwardIssue": {"key": "A-1"}})
    assert jira_openapi.validate_response("GET", "/rest/api/3/search", 410, {"message": "gone"})
    assert jira_openapi.validate_response("GET", "/__sim/requests", 200, [1]) == []
    assert jira_openapi.validate_response("GET", "/rest/api/2/search", 200, {"total": 1}) == []


def test_contract_tour_of_every_v3_endpoint(site: Callable[..., Site], contract: bool) -> None:
    if not contract:
        pytest.skip("Jira OpenAPI document not available")
    s = site()
    for path in ("/rest/api/3/myself", "/rest/api/3/serverInfo", "/rest/api/3/field", "/rest/api/3/issueLinkType",
                 "/rest/api/3/issuetype", "/rest/api/3/priority", "/rest/api/3/status", "/rest/api/3/project/ITSM"):
        assert s.get(path).status_code == 200, path
    major = create(s, "major", description=adf("d"), components=[{"name": "Payments"}], labels=["mim"],
                   priority={"id": "1"}, assignee={"accountId": "5b10ac8d82e05b22cc7d4e02"})
    child = create(s, "child")
    s.post("/rest/api/3/issueLink", json={"type": {"name": "Problem/Incident"}, "inwardIssue": {"key": major["key"]},
                                          "outwardIssue": {"key": child["key"]}, "comment": {"body": adf("linked")}})
    s.post(f"/rest/api/3/issue/{major['key']}/comment", json={
        "body": adf("internal"), "visibility": {"type": "role", "value": "Administrators"},
        "properties": [{"key": "sd.public.comment", "value": {"internal": True}}]})
    s.put(f"/rest/api/3/issue/{major['key']}", json={"update": {"labels": [{"add": "major"}]}})
    s.put(f"/rest/api/3/issue/{major['key']}/assignee", json={"accountId": "5b10ac8d82e05b22cc7d4e03"})
    s.put(f"/rest/api/3/issue/{major['key']}/properties/mim.connector", json={"majorKey": major["key"]})
    s.get(f"/rest/api/3/issue/{major['key']}/properties")
    s.get(f"/rest/api/3/issue/{major['key']}/properties/mim.connector")
    s.get(f"/rest/api/3/issue/{major['key']}/transitions")
    s.post(f"/rest/api/3/issue/{major['key']}/transitions", json={"transition": {"id": "11"}})
    s.post(f"/rest/api/3/issue/{major['key']}/transitions", json={"transition": {"id": "31"}})
    s.get(f"/rest/api/3/issue/{major['key']}", params={"expand": "names,schema,transitions",
                                                        "properties": "mim.connector"})
    s.get(f"/rest/api/3/issue/{child['key']}/comment")
    s.get("/rest/api/3/search/jql", params={"jql": "project = ITSM", "fields": "*all", "expand": "names,schema",
                                            "properties": "mim.connector", "reconcileIssues": major["id"]})
    s.post("/rest/api/3/search/jql", json={"jql": "project = ITSM", "fields": ["*navigable", "-description"],
                                           "maxResults": 1})
    s.post("/rest/api/3/search/approximate-count", json={"jql": "project = ITSM"})
    s.get("/rest/api/3/search", params={"jql": "project = ITSM"})
    s.get("/rest/api/3/issue/NOPE-1")
    s.post("/rest/api/3/issue/ITSM-1/transitions", json={"transition": {"id": "999"}})
    links = s.sim.links(major["key"])
    s.get(f"/rest/api/3/issueLink/{links[0]['id']}")
    s.delete(f"/rest/api/3/issue/{major['key']}/properties/mim.connector")
    v3 = [e for e in s.sim.exchanges if e["path"].startswith("/rest/api/3/")]
    assert len(v3) >= 30
    assert all(jira_openapi.covers(e["method"], e["path"]) for e in v3)
    assert jira_openapi.validate_exchanges(s.sim.exchanges) == []


# ---------------------------------------------------------------------------------------------- what a real site refuses


def test_data_center_search_ignores_entity_properties(site: Callable[..., Site]) -> None:
    s = site(flavour="dc")
    key = s.post("/rest/api/2/issue", json={"fields": {"project": {"key": "ITSM"}, "issuetype": {"name": "Incident"},
                                                       "summary": "x"}}).json()["key"]
    assert s.put(f"/rest/api/2/issue/{key}/properties/mim", json={"marker": "mim:r"}).status_code == 201
    found = s.post("/rest/api/2/search", json={"jql": "project = ITSM", "fields": ["summary"],
                                               "properties": ["mim"]}).json()["issues"]
    assert found and all("properties" not in issue for issue in found)  # JRASERVER-62898
    assert s.get(f"/rest/api/2/issue/{key}", params={"properties": "mim"}).json()["properties"] == {
        "mim": {"marker": "mim:r"}}


def test_the_major_incident_field_is_not_written_through_the_issue(site: Callable[..., Site]) -> None:
    s = site()
    key = create(s)["key"]
    refused = s.put(f"/rest/api/3/issue/{key}", json={"fields": {"customfield_10050": "MAJOR_INCIDENT"}})
    assert refused.status_code == 400 and "customfield_10050" in refused.json()["errors"]
    assert s.sim.issue(key)["fields"]["customfield_10050"] is None


def test_a_standard_site_refuses_the_premium_incidents_api(site: Callable[..., Site]) -> None:
    s = site(plan="standard", major_incident_field=False)
    made = create(s)
    tenant = s.get("/_edge/tenant_info").json()["cloudId"]
    refused = s.post(f"/jsm/incidents/cloudId/{tenant}/v1/incident/{made['id']}/major", json={"majorIncident": True})
    assert refused.status_code == 403 and "Premium" in refused.json()["errorMessages"][0]


def test_a_comment_inside_a_transition_loses_its_properties(site: Callable[..., Site]) -> None:
    s = site()
    key = create(s)["key"]
    s.post(f"/rest/api/3/issue/{key}/transitions", json={"transition": {"id": "31"}, "update": {"comment": [{"add": {
        "body": adf("done"), "properties": [{"key": "sd.public.comment", "value": {"internal": True}}]}}]}})
    [comment] = s.sim.comments(key)
    assert comment["jsdPublic"] is True  # undocumented whether Jira honours it: the simulator assumes not


def test_a_lost_answer_is_carried_out_and_answered_504(site: Callable[..., Site]) -> None:
    s = site()
    s.sim.lose_answers(r"^POST /rest/api/3/issue$")
    lost = s.post("/rest/api/3/issue", json={"fields": {"project": {"key": "ITSM"}, "issuetype": {"name": "Incident"},
                                                        "summary": "landed"}})
    assert lost.status_code == 504
    assert [s.sim.issue(k)["fields"]["summary"] for k in s.sim.issue_keys()] == ["landed"]
    assert create(s)["key"] == "ITSM-2"  # once only
    assert s.sim.exchanges[0]["fault"] == "lost answer"


def test_the_date_header_is_the_site_clock(site: Callable[..., Site]) -> None:
    s = site()
    answer = s.get("/rest/api/3/serverInfo")
    assert email.utils.parsedate_to_datetime(answer.headers["Date"]) == T0


@pytest.mark.parametrize("flavour", ["cloud", "dc"])
def test_permissions_groups_and_users_of_the_site(site: Callable[..., Site], flavour: str) -> None:
    s = site(flavour=flavour, permissions=["BROWSE_PROJECTS", "SERVICEDESK_AGENT"])
    v = 3 if flavour == "cloud" else 2
    held = s.get(f"/rest/api/{v}/mypermissions", params={"projectKey": "ITSM",
                                                          "permissions": "BROWSE_PROJECTS,RESOLVE_ISSUES"}).json()
    assert {k: p["havePermission"] for k, p in held["permissions"].items()} == {"BROWSE_PROJECTS": True,
                                                                                "RESOLVE_ISSUES": False}
    s.sim.add_user("alice.martin")
    s.sim.add_group("major-incident-team", members=["alice.martin"])
    found = s.get(f"/rest/api/{v}/groups/picker", params={"query": "incident"}).json()
    assert [g["name"] for g in found["groups"]] == ["major-incident-team"] and found["total"] == 1
    assert ("groupId" in found["groups"][0]) is (flavour == "cloud")
    key = "query" if flavour == "cloud" else "username"
    found_users = s.get(f"/rest/api/{v}/user/search", params={key: "alice.m"}).json()
    assert [u.get("displayName") for u in found_users] == ["Alice Martin"]


def test_teams_of_the_organisation_and_the_tenant_context(site: Callable[..., Site]) -> None:
    s = site()
    team = s.sim.add_team("major-incident-team")
    cloud_id = s.get("/_edge/tenant_info").json()["cloudId"]
    context = s.post("/gateway/api/graphql", json={
        "query": "query tenantContext($cloudId: ID!) { tenantContexts(cloudIds: [$cloudId]) { orgId } }",
        "variables": {"cloudId": cloud_id}}).json()
    org = context["data"]["tenantContexts"][0]["orgId"]
    assert org == s.sim.org_id
    teams = s.get(f"/gateway/api/public/teams/v1/org/{org}/teams", params={"siteId": cloud_id}).json()
    assert teams["entities"][0]["teamId"] == team["teamId"] and teams["cursor"] is None
    assert s.get("/gateway/api/public/teams/v1/org/other/teams").status_code == 404


def test_contract_checks_of_the_incidents_api_and_request_participants(contract: bool) -> None:
    if not contract:
        pytest.skip("Jira OpenAPI document not available")
    base = "/jsm/incidents/cloudId/35273b54-3f06-40d2-880f-dd28cf8daafa/v1/incident"

    def check(method: str, path: str, body: Any, status: int = 204, answer: Any = None) -> list[str]:
        return jira_openapi.validate_exchange({"method": method, "path": path, "query": {}, "request_body": body,
                                              "status": status, "response_body": answer})

    assert check("POST", f"{base}/10001/major", {"majorIncident": True}) == []
    assert check("POST", f"{base}/10001/major", {"majorIncident": "MAJOR_INCIDENT"})  # a string is not the boolean
    assert check("POST", f"{base}/ITSM-1/major", {"majorIncident": True})  # a key where the numeric id goes
    team = "ari:cloud:identity::team/36885b3c-1bf0-4f85-a357-c5b858c31de4"
    assert check("POST", f"{base}/10001/responder/add", {"responders": [{"ari": team}]}) == []
    assert check("POST", f"{base}/10001/stakeholder/add", {"stakeholders": [{"ari": team}]})  # users only
    assert check("GET", f"{base}/10001/responder", None, 200, {"responders": [{"ari": team}]}) == []
    assert check("POST", f"{base}/10001/unknown", {})
    participants = "/rest/servicedeskapi/request/10001/participant"
    assert check("POST", participants, {"accountIds": ["5b10ac8d82e05b22cc7d4e02"]}, 400) == []
    assert check("POST", participants, {"people": ["x"]}, 200, {"size": 0, "start": 0, "limit": 50,
                                                                  "isLastPage": True, "values": []})


def test_responders_are_set_through_the_incidents_api_and_not_searchable(site: Callable[..., Site]) -> None:
    s = site()
    made = create(s)
    team = s.sim.add_team("major-incident-team")
    tenant = s.get("/_edge/tenant_info").json()["cloudId"]
    base = f"/jsm/incidents/cloudId/{tenant}/v1/incident"
    ari = f"ari:cloud:identity::team/{team['teamId']}"
    assert s.post(f"{base}/{made['key']}/responder/add", json={"responders": [{"ari": ari}]}).status_code == 404
    assert s.post(f"{base}/{made['id']}/responder/add", json={"responders": [{"ari": ari}]}).status_code == 204
    assert s.get(f"{base}/{made['id']}/responder").json() == {"responders": [{"ari": ari}]}
    assert s.sim.responders(made["key"]) == [{"ari": ari, "name": "major-incident-team", "type": "team"}]
    unknown = s.post(f"{base}/{made['id']}/responder/add", json={"responders": [{"ari": "ari:cloud:identity::team/x"}]})
    assert unknown.status_code == 400
    refused = s.put(f"/rest/api/3/issue/{made['key']}", json={"fields": {"customfield_10080": [ari]}})
    assert refused.status_code == 400
    for clause in ("Responders", "cf[10080]"):
        searched = s.post("/rest/api/3/search/jql", json={"jql": f"project = ITSM AND {clause} IS NOT EMPTY"})
        assert searched.status_code == 400, clause
    user = f"ari:cloud:identity::user/{s.sim.users()[1]['accountId']}"
    assert s.post(f"{base}/{made['id']}/stakeholder/add", json={"stakeholders": [{"ari": user}]}).status_code == 204
    assert s.post(f"{base}/{made['id']}/stakeholder/add", json={"stakeholders": [{"ari": ari}]}).status_code == 400
    assert s.sim.stakeholders(made["key"]) == [user]
