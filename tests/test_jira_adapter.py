"""Unit tests of the Jira adapter at the HTTP boundary (``responses``, every mock must fire, page
sequences in order): paging, JQL, discovery, the retry table, typed errors and each write verb."""

from __future__ import annotations

import base64
import email.utils
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from responses.registries import OrderedRegistry

from connector.core.actions import (
    AddNote,
    CreateChange,
    CreateParent,
    CreateTask,
    DeclareMajor,
    LinkChild,
    Notify,
    ResolveChild,
    SetFields,
    SetStage,
)
from connector.core.mapping import Mapping, load_mapping
from connector.core.settings import JiraSettings, SettingsError, default_dir
from connector.platforms.base import Platform, Watermark, marker_tag
from connector.platforms.errors import (
    AuthenticationError,
    ClientError,
    Conflict,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    ResponseAction,
    TransientError,
)
from connector.platforms.jira import (
    JiraPlatform,
    adf_document,
    adf_plain_text,
    jql_epoch_ms,
    jql_string,
)
from connector.platforms.paging import PagingStalled
from connector.platforms.retry import (
    OTHER_4XX,
    OTHER_STATUS,
    RETRY_AFTER_503,
    RETRY_TABLE,
    UNREADABLE_2XX,
    Condition,
    RetryPolicy,
)
from connector.sim.base import SimRequest
from connector.sim.jira import JiraSim

URL = "https://acme.atlassian.net"
DC_URL = "https://jira.acme.example"
EMAIL = "bot@acme.example"
TOKEN = "tok-s3cr3t-VALUE-123"
UTC = timezone.utc
T0 = datetime(2024, 1, 15, 15, 0, tzinfo=UTC)
MAJOR_TYPE = "com.atlassian.jira.modules.servicemanagement.major-incident-entity:major-incident-entity-field-cftype"
SERVICES_TYPE = "com.atlassian.jira.plugins.service-entity:service-entity-field-cftype"
TEXT_TYPE = "com.atlassian.jira.plugin.system.customfieldtypes:textfield"

FIELDS: list[dict[str, Any]] = [
    {"id": "summary", "name": "Summary", "custom": False, "schema": {"type": "string", "system": "summary"}},
    {"id": "duedate", "name": "Due date", "custom": False, "schema": {"type": "date", "system": "duedate"}},
    # A decoy with the right name and the wrong type: the flag is found by schema type, never by name.
    {"id": "customfield_10001", "name": "Major incident", "custom": True,
     "schema": {"type": "string", "custom": TEXT_TYPE, "customId": 10001}},
    {"id": "customfield_10050", "name": "MI flag (renamed)", "custom": True,
     "schema": {"type": "any", "custom": MAJOR_TYPE, "customId": 10050}},
    {"id": "customfield_10060", "name": "Major incident stage", "custom": True,
     "schema": {"type": "string", "custom": TEXT_TYPE, "customId": 10060}},
    {"id": "customfield_10070", "name": "Affected services", "custom": True,
     "schema": {"type": "array", "custom": SERVICES_TYPE, "customId": 10070}},
]
PLAIN_FIELDS = [f for f in FIELDS if f["id"] in ("summary",)]
LINK_TYPES = {"issueLinkTypes": [
    {"id": "10000", "name": "Blocks", "inward": "is blocked by", "outward": "blocks"},
    {"id": "10006", "name": "Problem/Incident", "inward": "is caused by", "outward": "causes"},
    {"id": "10003", "name": "Relates", "inward": "relates to", "outward": "relates to"},
]}
ISSUE_TYPES = [{"id": "10001", "name": "[System] Incident"}, {"id": "10002", "name": "Post-incident review"},
               {"id": "10003", "name": "Change"}, {"id": "10004", "name": "Task"}]
PROBLEM_TYPE = {"id": "10009", "name": "Problem"}
ACCOUNT = "5b10ac8d82e05b22cc7d4e02"
CLOUD_ID = "35273b54-3f06-40d2-880f-dd28cf8daafa"
INCIDENTS = f"{URL}/jsm/incidents/cloudId/{CLOUD_ID}/v1"


@pytest.fixture(scope="module")
def mapping() -> Mapping:
    loaded, errors = load_mapping(default_dir("mappings") / "jira.yaml")
    assert loaded is not None, errors
    return loaded


def no_sleep_policy(**kwargs: Any) -> RetryPolicy:
    return RetryPolicy(sleep=lambda seconds: None, **kwargs)


def mock() -> responses.RequestsMock:
    return responses.RequestsMock(assert_all_requests_are_fired=True, registry=OrderedRegistry)


def make(mapping: Mapping, flavour: str = "cloud", **kwargs: Any) -> JiraPlatform:
    url = DC_URL if flavour == "dc" else URL
    kwargs.setdefault("policy", no_sleep_policy())
    return JiraPlatform(url, EMAIL, TOKEN, mapping, flavour=flavour, **kwargs)  # type: ignore[arg-type]


def register_discovery(rsps: responses.RequestsMock, base: str, version: int, fields: list[dict[str, Any]] = FIELDS,
                       issue_types: list[dict[str, Any]] = ISSUE_TYPES, server: str | None = None) -> None:
    if server is not None:
        rsps.get(f"{base}/rest/api/2/serverInfo", json={"deploymentType": server, "version": "x"})
    me = {"accountId": "bot-account", "timeZone": "America/New_York"} if version == 3 else \
        {"name": "bot", "timeZone": "Europe/Berlin"}
    if version == 3:
        rsps.get(f"{base}/_edge/tenant_info", json={"cloudId": CLOUD_ID})
    rsps.get(f"{base}/rest/api/{version}/myself", json=me)
    rsps.get(f"{base}/rest/api/{version}/field", json=fields)
    rsps.get(f"{base}/rest/api/{version}/issueLinkType", json=LINK_TYPES)
    rsps.get(f"{base}/rest/api/{version}/issuetype", json=issue_types)


def discovered(mapping: Mapping, flavour: str = "cloud", fields: list[dict[str, Any]] = FIELDS,
               issue_types: list[dict[str, Any]] = ISSUE_TYPES, **kwargs: Any) -> tuple[JiraPlatform, dict[str, Any]]:
    """A platform whose discovery ran (against mocks); returns it and the discovery to reuse."""
    platform = make(mapping, flavour, **kwargs)
    with mock() as rsps:
        register_discovery(rsps, DC_URL if flavour == "dc" else URL, 2 if flavour == "dc" else 3, fields, issue_types)
        disc = platform.discover(None)
    return platform, disc


def body(call: Any) -> Any:
    return json.loads(call.request.body)


def url(call: Any) -> str:
    return str(call.request.url)


def issue(ident: str, key: str, updated: str = "2024-01-15T14:50:00.000+0000", labels: list[str] | None = None,
          links: list[dict[str, Any]] | None = None, prop: dict[str, Any] | None = None, status: str = "new",
          **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": ident, "key": key,
        "fields": {"summary": f"issue {key}", "created": "2024-01-15T14:40:00.000+0000", "updated": updated,
                   "labels": labels or [], "issuelinks": links or [], "components": [{"name": "web-shop"}],
                   "priority": {"name": "Medium"}, "reporter": {"accountId": f"acc-{ident}"},
                   "issuetype": {"id": "10001", "name": "[System] Incident"},
                   "status": {"name": "Open" if status == "new" else "Resolved", "statusCategory": {"key": status}},
                   **fields},
    }
    if prop is not None:
        data["properties"] = {"mim": prop}
    return data


def caused_by(major_id: str, major_key: str, issuetype: dict[str, str] | None = None) -> dict[str, Any]:
    """An ``issuelinks`` entry as the child sees "MAJOR causes CHILD"."""
    return {"id": "900", "type": {"id": "10006", "name": "Problem/Incident", "inward": "is caused by", "outward": "causes"},
            "inwardIssue": {"id": major_id, "key": major_key,
                            "fields": {"issuetype": issuetype or {"id": "10001", "name": "[System] Incident"}}}}


def page(*issues: dict[str, Any], token: str | None = None, last: bool | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"issues": list(issues)}
    if token is not None:
        out["nextPageToken"] = token
    if last is not None:
        out["isLast"] = last
    return out


SEARCH = f"{URL}/rest/api/3/search/jql"
DC_SEARCH = f"{DC_URL}/rest/api/2/search"


# ---------------------------------------------------------------------------------------------- syntax


@pytest.mark.parametrize("value, expected", [
    ("ITSM", '"ITSM"'),
    ('Payments "EU" OR Cards', '"Payments \\"EU\\" OR Cards"'),
    ("C:\\ops", '"C:\\\\ops"'),
    ('x" OR project = "Y', '"x\\" OR project = \\"Y"'),
    ("two\nlines", '"two\\nlines"'),
], ids=["plain", "quote-and-or", "backslash", "injection", "newline"])
def test_jql_string_escapes_quote_backslash_and_control_characters(value: str, expected: str) -> None:
    assert jql_string(value) == expected


@pytest.mark.parametrize("value", ['web-shop" OR project = "HR', 'x\\" OR status = Open OR "y', "a\\", 'End"'],
                         ids=["quote-or", "escaped-quote-or", "trailing-backslash", "trailing-quote"])
def test_escaped_value_stays_one_literal_for_a_jql_parser(value: str) -> None:
    sim = JiraSim()
    sim.create_issue({"summary": "target", "labels": ["plain"]})
    sim.create_issue({"summary": "other"})
    jql = f"project = {jql_string('ITSM')} AND labels = {jql_string(value)}"
    answer = sim.handle(SimRequest("POST", "/rest/api/3/search/jql", {}, {},
                                   json.dumps({"jql": jql, "fields": ["summary"]}).encode()))
    # The whole value is one label literal: nothing matches, nothing is widened to other issues.
    assert answer.status == 200 and answer.body["issues"] == []


def test_epoch_millis_are_exact_and_zone_free() -> None:
    assert jql_epoch_ms(datetime(2024, 1, 15, 15, 0, 0, 500000, tzinfo=UTC)) == 1705330800500
    berlin = datetime(2024, 1, 15, 16, 0, tzinfo=timezone(timedelta(hours=1)))
    assert jql_epoch_ms(berlin) == jql_epoch_ms(T0)


def test_adf_round_trip() -> None:
    doc = adf_document("one\n\nthree [mim-abc]")
    assert doc["type"] == "doc" and doc["version"] == 1 and len(doc["content"]) == 3
    assert adf_plain_text(doc) == "one\n\nthree [mim-abc]"
    assert adf_plain_text("plain DC body") == "plain DC body"


# ---------------------------------------------------------------------------------------------- reading


def test_cloud_search_follows_next_page_token_until_absent(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        rsps.post(SEARCH, json=page(issue("1", "ITSM-1"), issue("2", "ITSM-2"), token="t1"))
        rsps.post(SEARCH, json=page(issue("3", "ITSM-3"), token="t2", last=False))
        rsps.post(SEARCH, json=page(issue("4", "ITSM-4")))
        got = list(platform.fetch_changed(None, T0 - timedelta(hours=5)))
        sent = [body(c) for c in rsps.calls]
    assert [i["key"] for i in got] == ["ITSM-1", "ITSM-2", "ITSM-3", "ITSM-4"]
    assert [b.get("nextPageToken") for b in sent] == [None, "t1", "t2"]
    assert all(url(c) == SEARCH for c in rsps.calls)  # never the removed /rest/api/3/search
    first = sent[0]
    assert first["properties"] == ["mim"]
    assert {"summary", "components", "priority", "status", "created", "updated", "reporter", "labels", "issuelinks",
            "customfield_10050", "customfield_10060", "customfield_10070"} <= set(first["fields"])
    assert "startAt" not in first and set(first) <= {"jql", "nextPageToken", "maxResults", "fields", "properties",
                                                     "reconcileIssues"}


def test_cloud_search_stops_on_is_last_even_with_a_token(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        rsps.post(SEARCH, json=page(issue("1", "ITSM-1"), token="stale", last=True))
        assert len(list(platform.fetch_changed(None, T0))) == 1


def test_a_repeated_page_token_is_a_loop_not_an_endless_poll(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        rsps.post(SEARCH, json=page(issue("1", "ITSM-1"), token="same"))
        rsps.post(SEARCH, json=page(issue("2", "ITSM-2"), token="same"))
        with pytest.raises(PagingStalled, match="paging loop"):
            list(platform.fetch_changed(None, T0))


def test_a_data_center_search_that_ignores_start_at_is_a_loop_not_an_endless_search(mapping: Mapping) -> None:
    platform, _ = discovered(mapping, "dc")
    with mock() as rsps:
        # no total: only the issues themselves show that startAt is ignored
        rsps.post(DC_SEARCH, json={"startAt": 0, "issues": [issue("1", "ITSM-1"), issue("2", "ITSM-2")]})
        rsps.post(DC_SEARCH, json={"startAt": 2, "issues": [issue("1", "ITSM-1"), issue("2", "ITSM-2")]})
        with pytest.raises(PagingStalled, match="offset 2 repeated rows already read") as caught:
            platform.search('project = "ITSM"')
        assert [body(c)["startAt"] for c in rsps.calls] == [0, 2]
    assert caught.value.retryable and "POST /rest/api/2/search" in str(caught.value)


def test_a_data_center_delta_poll_that_ignores_start_at_is_a_loop(mapping: Mapping) -> None:
    platform, _ = discovered(mapping, "dc")
    t1 = "2024-01-15T14:50:00.000+0000"
    same = {"issues": [issue("1", "ITSM-1", t1), issue("2", "ITSM-2", t1)]}
    with mock() as rsps:
        rsps.post(DC_SEARCH, json=same)  # moves the cursor to 14:50
        rsps.post(DC_SEARCH, json=same)  # the restart from 14:50 reads them again: expected
        rsps.post(DC_SEARCH, json=same)  # startAt 2 within 14:50 brings nothing new: the server ignores it
        with pytest.raises(PagingStalled, match="startAt 2 repeated issues"):
            list(platform.fetch_changed(None, T0 - timedelta(hours=1)))
        assert [body(c)["startAt"] for c in rsps.calls] == [0, 0, 2]


def test_comments_that_ignore_start_at_fail_the_note_for_a_later_cycle(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    comments = {"comments": [{"id": "1", "body": "first"}, {"id": "2", "body": "second"}]}
    with mock() as rsps:
        rsps.get(f"{ISSUE}/1/comment", json=comments)
        rsps.get(f"{ISSUE}/1/comment", json=comments)
        action = AddNote(key="note:1:loop", target="1", text="t")
        [result] = platform.apply([action], keep, frozenset({action.key}))
    assert result.status == "failed" and result.retryable and "repeated rows already read" in result.detail


def test_changed_issues_are_deduplicated_by_id_and_updated(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        rsps.post(SEARCH, json=page(issue("1", "ITSM-1"), issue("2", "ITSM-2"), token="t1"))
        rsps.post(SEARCH, json=page(issue("2", "ITSM-2"), issue("1", "ITSM-1", updated="2024-01-15T14:55:00.000+0000")))
        got = [(i["key"], i["fields"]["updated"][11:16]) for i in platform.fetch_changed(None, T0)]
    assert got == [("ITSM-1", "14:50"), ("ITSM-2", "14:50"), ("ITSM-1", "14:55")]


def test_watermark_is_sent_as_unquoted_epoch_millis_minus_overlap(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    mark = Watermark(T0, "10001")
    with mock() as rsps:
        rsps.post(SEARCH, json=page())
        rsps.post(SEARCH, json=page())
        list(platform.fetch_changed(mark, T0 - timedelta(days=1)))
        list(platform.fetch_changed(None, T0 - timedelta(hours=4)))
        with_mark, without = (body(c)["jql"] for c in rsps.calls)
    overlap_ms = 2 * 60 * 1000  # mappings/jira.yaml overlap: 2m
    scope = 'project = "ITSM" AND issuetype = 10001'  # incidents only: not the review tasks and changes
    assert with_mark == f"{scope} AND updated >= {jql_epoch_ms(T0) - overlap_ms} ORDER BY updated ASC, key ASC"
    assert without == f"{scope} AND updated >= {jql_epoch_ms(T0 - timedelta(hours=4))} ORDER BY updated ASC, key ASC"
    assert "/" not in with_mark and "'" not in with_mark  # never a quoted local date


def test_project_value_is_quoted_and_escaped_in_every_query(mapping: Mapping) -> None:
    platform, _ = discovered(mapping, project='ITSM" OR project = "HR')
    with mock() as rsps:
        rsps.post(SEARCH, json=page())
        list(platform.fetch_changed(None, T0))
        jql = body(rsps.calls[0])["jql"]
    assert jql.startswith('project = "ITSM\\" OR project = \\"HR" AND issuetype = 10001 AND updated >= ')


def test_dc_paging_restarts_from_last_updated_and_steps_start_at_through_ties(mapping: Mapping) -> None:
    platform, _ = discovered(mapping, "dc")
    t1, t2 = "2024-01-15T14:50:00.000+0000", "2024-01-15T14:51:00.000+0000"
    ms2 = jql_epoch_ms(datetime(2024, 1, 15, 14, 51, tzinfo=UTC))
    with mock() as rsps:
        rsps.post(DC_SEARCH, json={"startAt": 0, "maxResults": 2, "total": 5,
                                   "issues": [issue("1", "ITSM-1", t1), issue("2", "ITSM-2", t2)]})
        # Restart from the last updated seen (14:51): ITSM-2 comes back and is dropped as a duplicate.
        rsps.post(DC_SEARCH, json={"startAt": 0, "maxResults": 2, "total": 4,
                                   "issues": [issue("2", "ITSM-2", t2), issue("3", "ITSM-3", t2)]})
        # The whole page shared one millisecond: only then does startAt step forward.
        rsps.post(DC_SEARCH, json={"startAt": 2, "maxResults": 2, "total": 4, "issues": [issue("4", "ITSM-4", t2),
                                                                                         issue("5", "ITSM-5", t2)]})
        got = [i["key"] for i in platform.fetch_changed(None, T0 - timedelta(hours=1))]
        sent = [body(c) for c in rsps.calls]
        auth = rsps.calls[0].request.headers["Authorization"]
    assert got == ["ITSM-1", "ITSM-2", "ITSM-3", "ITSM-4", "ITSM-5"]
    assert [b["startAt"] for b in sent] == [0, 0, 2]
    assert f"updated >= {ms2} " in sent[1]["jql"] and sent[1]["jql"] == sent[2]["jql"]
    assert all("properties" not in b for b in sent)  # Data Center search returns none (JRASERVER-62898)
    assert auth == f"Bearer {TOKEN}"


def test_dc_single_page_stops_at_total(mapping: Mapping) -> None:
    platform, _ = discovered(mapping, "dc")
    with mock() as rsps:
        rsps.post(DC_SEARCH, json={"startAt": 0, "maxResults": 100, "total": 1, "issues": [issue("1", "ITSM-1")]})
        assert len(list(platform.fetch_changed(None, T0))) == 1


def test_quiet_poll_with_cached_discovery_is_one_request(mapping: Mapping) -> None:
    _, disc = discovered(mapping)
    platform = make(mapping)
    with mock() as rsps:
        rsps.post(SEARCH, json=page(last=True))
        assert platform.discover(disc) == disc
        assert list(platform.fetch_changed(Watermark(T0, "1"), T0)) == []
    assert platform.requests_sent == 1


def test_fetch_marked_keeps_only_issues_with_our_marker(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    ours = issue("1", "ITSM-1", customfield_10050="MAJOR_INCIDENT", prop={"marker": "mim:service-surge", "declared": True})
    human = issue("2", "ITSM-2", customfield_10050="MAJOR_INCIDENT")
    child = issue("3", "ITSM-3", labels=["mim-declared"], prop={"parent": "1"})
    with mock() as rsps:
        rsps.post(SEARCH, json=page(ours, human, child))
        got = platform.fetch_marked()
        jql = body(rsps.calls[0])["jql"]
    assert [i["key"] for i in got] == ["ITSM-1"]
    assert jql == ('project = "ITSM" AND (labels = "major-incident" OR labels = "mim-declared" OR cf[10050] IS NOT EMPTY)'
                   ' AND statusCategory != "Done" ORDER BY key ASC')


# ---------------------------------------------------------------------------------------------- discovery


def test_discovery_finds_fields_by_schema_type_and_link_type_by_name(mapping: Mapping) -> None:
    platform = make(mapping, "auto")
    with mock() as rsps:
        register_discovery(rsps, URL, 3, server="Cloud")
        disc = platform.discover(None)
        auth = rsps.calls[0].request.headers["Authorization"]
    assert platform.flavour == "cloud" and platform.requests_sent == 6
    assert disc["cloud_id"] == CLOUD_ID
    assert auth == "Basic " + base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
    assert disc["fields"]["major"] == {"id": "customfield_10050", "name": "MI flag (renamed)", "clause": "cf[10050]",
                                       "type": "any", "custom": MAJOR_TYPE}
    assert disc["fields"]["stage"]["id"] == "customfield_10060"
    assert disc["fields"]["services"]["id"] == "customfield_10070"
    assert disc["link_types"]["child"] == {"id": "10006", "name": "Problem/Incident", "inward": "is caused by",
                                           "outward": "causes"}
    assert disc["issue_types"]["incident"] == {"id": "10001", "name": "[System] Incident"}
    assert disc["time_zone"] == "America/New_York"
    assert json.loads(json.dumps(disc)) == disc  # JSON-able for the state store


def test_discovery_detects_data_center_and_switches_to_v2_and_bearer(mapping: Mapping) -> None:
    platform = JiraPlatform(DC_URL, None, TOKEN, mapping, policy=no_sleep_policy())
    with mock() as rsps:
        register_discovery(rsps, DC_URL, 2, server="Server")
        disc = platform.discover(None)
        headers = [c.request.headers["Authorization"] for c in rsps.calls]
    assert disc["flavour"] == "dc" and disc["me"] == "bot"
    assert set(headers) == {f"Bearer {TOKEN}"}


def test_cached_discovery_sends_no_request_unless_settings_changed(mapping: Mapping) -> None:
    _, disc = discovered(mapping)
    platform = make(mapping)
    with mock():
        assert platform.discover(disc) is disc
    assert platform.requests_sent == 0
    other_project = make(mapping, project="OPS")
    with mock() as rsps:
        register_discovery(rsps, URL, 3)
        assert other_project.discover(disc)["config"]["project"] == "OPS"


def test_a_missing_link_type_is_a_configuration_error(mapping: Mapping) -> None:
    platform = make(mapping)
    with mock() as rsps:
        rsps.get(f"{URL}/_edge/tenant_info", json={"cloudId": CLOUD_ID})
        rsps.get(f"{URL}/rest/api/3/myself", json={})
        rsps.get(f"{URL}/rest/api/3/field", json=FIELDS)
        rsps.get(f"{URL}/rest/api/3/issueLinkType", json={"issueLinkTypes": [LINK_TYPES["issueLinkTypes"][0]]})
        with pytest.raises(SettingsError, match="Problem/Incident.*available: Blocks"):
            platform.discover(None)


# ---------------------------------------------------------------------------------------------- retries and errors


def retry_after_date(seconds: int) -> str:
    return email.utils.formatdate(time.time() + seconds, usegmt=True)


@pytest.mark.parametrize("status, headers, waited", [
    (429, {"Retry-After": "7"}, 7.0),
    (429, {"Retry-After": "@date+30"}, 30.0),
    (503, {"Retry-After": "3"}, 3.0),
    (503, {}, None),
    (500, {}, None),
    (502, {}, None),
    (504, {}, None),
], ids=["429-seconds", "429-http-date", "503-retry-after", "503-backoff", "500", "502", "504"])
def test_retryable_statuses_are_retried_honouring_retry_after(mapping: Mapping, status: int, headers: dict[str, str],
                                                              waited: float | None) -> None:
    sleeps: list[float] = []
    platform, _ = discovered(mapping, policy=RetryPolicy(sleep=sleeps.append))
    if headers.get("Retry-After", "").startswith("@date"):
        headers = {"Retry-After": retry_after_date(30)}
    with mock() as rsps:
        rsps.post(SEARCH, status=status, json={"errorMessages": ["Rate limit exceeded."], "errors": {}}, headers=headers)
        rsps.post(SEARCH, json=page())
        assert list(platform.fetch_changed(None, T0)) == []
    assert platform.requests_sent == 7  # 5 discovery + the failed attempt + the retry
    assert len(sleeps) == 1
    if waited is not None:
        assert sleeps[0] == pytest.approx(waited, abs=2)
    else:
        assert 0 < sleeps[0] <= 0.5  # full-jitter backoff, first step


@pytest.mark.parametrize("failure", [requests.ConnectionError("reset by peer"), requests.Timeout("read timeout")],
                         ids=["connection", "timeout"])
def test_connection_errors_and_timeouts_are_retried(mapping: Mapping, failure: Exception) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        rsps.post(SEARCH, body=failure)
        rsps.post(SEARCH, json=page())
        assert list(platform.fetch_changed(None, T0)) == []
        sent: Any = rsps.calls[1].request
        assert sent.req_kwargs["timeout"] == 30.0
        assert sent.req_kwargs["verify"]  # TLS verified (True or the environment's CA bundle)


def test_retries_stop_after_the_policy_attempts(mapping: Mapping) -> None:
    platform, _ = discovered(mapping, policy=no_sleep_policy(attempts=3))
    with mock() as rsps:
        for _ in range(3):
            rsps.post(SEARCH, status=503, json={})
        with pytest.raises(TransientError):
            list(platform.fetch_changed(None, T0))
    assert platform.requests_sent == 5 + 3


@pytest.mark.parametrize("status, error", [
    (400, ClientError), (403, PermissionDenied), (404, NotFound), (409, Conflict), (413, LimitExceeded),
], ids=["400", "403", "404", "409", "413"])
def test_other_4xx_are_typed_and_never_retried(mapping: Mapping, status: int, error: type[Exception]) -> None:
    platform, _ = discovered(mapping)
    body_json = {"errorMessages": ["The issue has reached a limit.", "Second message."],
                 "errors": {"labels": "The label 'x y' contains spaces."},
                 "echo": {"reporter": "jane.doe@customer.example", "description": "private customer details"}}
    with mock() as rsps:
        rsps.post(SEARCH, status=status, json=body_json)
        with pytest.raises(error) as caught:
            list(platform.fetch_changed(None, T0))
    text = str(caught.value)
    assert "The issue has reached a limit.; Second message.; labels: The label 'x y' contains spaces." in text
    assert f"HTTP {status}" in text and "POST /rest/api/3/search/jql" in text
    assert "jane.doe" not in text and "private customer" not in text and TOKEN not in text
    assert platform.requests_sent == 5 + 1


def test_401_is_retried_once_then_raised_without_the_token(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        for _ in range(2):
            rsps.post(SEARCH, status=401, json={"errorMessages": ["You are not authenticated."], "errors": {}})
        with pytest.raises(AuthenticationError) as caught:
            list(platform.fetch_changed(None, T0))
    assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value)
    assert platform.requests_sent == 5 + 2


def test_a_non_json_error_body_is_not_echoed(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        rsps.post(SEARCH, status=400, body="<html>secret stack trace for jane.doe</html>", content_type="text/html")
        with pytest.raises(ClientError) as caught:
            list(platform.fetch_changed(None, T0))
    assert "jane.doe" not in str(caught.value)


def failure_of(condition: Condition) -> dict[str, Any]:
    """``responses`` arguments that make a Jira endpoint answer with the condition of a retry table row."""
    if isinstance(condition, type):
        return {"body": condition("simulated")}
    if condition == RETRY_AFTER_503:
        return {"status": 503, "json": {}, "headers": {"Retry-After": "0"}}
    if condition == UNREADABLE_2XX:
        return {"status": 200, "body": "<html>Down for maintenance</html>", "content_type": "text/html"}
    status = {OTHER_4XX: 418, OTHER_STATUS: 501}.get(condition, condition)
    return {"status": status, "json": {"errorMessages": ["refused"], "errors": {}}}


@pytest.mark.parametrize("condition", list(RETRY_TABLE), ids=lambda c: getattr(c, "__name__", str(c)))
def test_a_comment_walks_every_row_of_the_retry_table(mapping: Mapping, condition: Condition) -> None:
    row = RETRY_TABLE[condition]
    platform, _ = discovered(mapping)
    comments = f"{ISSUE}/1/comment"
    with mock() as rsps:
        rsps.post(comments, **failure_of(condition))
        if row.action is ResponseAction.REREAD:  # it may have landed: read back before sending again
            rsps.get(comments, json={"comments": [], "total": 0})
        if row.action is not ResponseAction.FATAL:
            rsps.post(comments, status=201, json={"id": "100"})
        [result] = platform.apply([AddNote(key="note:1:walk", target="1", text="Walk the table.")], keep)
    assert result.status == ("failed" if row.action is ResponseAction.FATAL else "applied"), result.detail
    sent = {ResponseAction.FATAL: 1, ResponseAction.RETRY: 2, ResponseAction.RETRY_ONCE: 2, ResponseAction.REREAD: 3}
    assert platform.requests_sent == 5 + sent[row.action]


def test_secrets_never_appear_in_errors_or_reprs(mapping: Mapping) -> None:
    platform = make(mapping)
    assert TOKEN not in repr(platform)
    with pytest.raises(SettingsError) as missing:
        JiraPlatform.from_settings(JiraSettings(email=EMAIL, token=TOKEN), mapping)  # type: ignore[arg-type]
    assert "jira.url (MIM_JIRA_URL)" in str(missing.value) and TOKEN not in str(missing.value)
    with pytest.raises(SettingsError, match="jira.token"):
        JiraPlatform.from_settings(JiraSettings(url=URL, email=EMAIL), mapping)
    with pytest.raises(SettingsError, match="jira.email"):
        JiraPlatform.from_settings(JiraSettings(url=URL, token=TOKEN, flavour="cloud"), mapping)  # type: ignore[arg-type]
    settings = JiraSettings(url=URL, email=EMAIL, token=TOKEN, project="OPS")  # type: ignore[arg-type]
    built = JiraPlatform.from_settings(settings, mapping)
    assert built.project == "OPS" and built.verify is True
    assert isinstance(built, Platform)  # every member of the protocol, doctor_checks included


# ---------------------------------------------------------------------------------------------- mapping


def test_to_ticket_derives_major_parent_stage_marker_and_ci(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    proposed = platform.to_ticket(issue("1", "ITSM-1", labels=["mim-proposed", "mim-declared"],
                                        customfield_10050="MAJOR_INCIDENT", customfield_10060="Containment",
                                        customfield_10070=[{"name": "Checkout API"}],
                                        prop={"marker": "mim:service-surge", "declared": True}))
    assert (proposed.major, proposed.stage, proposed.marker, proposed.ci) == (
        "proposed", "containment", "mim:service-surge", "Checkout API")
    assert proposed.url == f"{URL}/browse/ITSM-1" and proposed.service == "web-shop" and proposed.caller == "acc-1"
    accepted = platform.to_ticket(issue("1", "ITSM-1", customfield_10050={"value": "MAJOR_INCIDENT"}))
    assert accepted.major == "accepted"
    rejected = platform.to_ticket(issue("1", "ITSM-1", customfield_10050=None, prop={"marker": "mim:x", "declared": True}))
    assert rejected.major == "rejected"
    assert platform.to_ticket(issue("1", "ITSM-1")).major == "none"
    child = platform.to_ticket(issue("2", "ITSM-2", links=[caused_by("1", "ITSM-1")]))
    assert child.parent == "1"


def test_cloud_rich_text_is_read_as_plain_text(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    ticket = platform.to_ticket(issue("1", "ITSM-1", description=adf_document("Checkout fails\nfor everyone")))
    assert ticket.description == "Checkout fails\nfor everyone"


def test_change_is_the_linked_issue_of_the_change_type(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    relates = {"type": {"id": "10003", "name": "Relates"}}
    links = [{**relates, "outwardIssue": {"id": "30", "key": "ITSM-30", "fields": {"issuetype": {"id": "10002"}}}},
             {**relates, "outwardIssue": {"id": "40", "key": "ITSM-40", "fields": {"issuetype": {"id": "10003"}}}}]
    assert platform.to_ticket(issue("1", "ITSM-1", links=links)).change == "40"
    assert platform.to_ticket(issue("1", "ITSM-1", links=links[:1])).change is None


def test_parent_needs_the_configured_direction_and_an_incident(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    # Seen from the major incident itself the link shows the child as outwardIssue: not a parent.
    major_view = {"type": {"id": "10006", "name": "Problem/Incident"}, "outwardIssue": {"id": "2", "key": "ITSM-2"}}
    assert platform.to_ticket(issue("1", "ITSM-1", links=[major_view])).parent is None
    # A Problem also "causes" incidents; it is not a major incident.
    assert platform.to_ticket(issue("2", "ITSM-2", links=[caused_by("9", "ITSM-9", PROBLEM_TYPE)])).parent is None
    relates = {"type": {"id": "10003", "name": "Relates"}, "inwardIssue": {"id": "1", "key": "ITSM-1"}}
    assert platform.to_ticket(issue("2", "ITSM-2", links=[relates])).parent is None


def test_stage_falls_back_to_labels_without_the_field(mapping: Mapping) -> None:
    platform, _ = discovered(mapping, fields=PLAIN_FIELDS)
    ticket = platform.to_ticket(issue("1", "ITSM-1", labels=["mim-stage-identification", "mim-stage-resolution",
                                                             "major-incident"]))
    assert ticket.stage == "resolution" and ticket.major == "accepted" and ticket.ci is None
    odd = platform.to_ticket(issue("1", "ITSM-1", labels=["mim-stage-bogus"]))
    assert odd.stage is None


# ---------------------------------------------------------------------------------------------- writes

ISSUE = f"{URL}/rest/api/3/issue"


def seen(platform: JiraPlatform, rsps: responses.RequestsMock, *issues: dict[str, Any]) -> None:
    """Let the platform read ``issues`` as a poll would (one search call, reset afterwards)."""
    rsps.post(SEARCH, json=page(*issues))
    list(platform.fetch_changed(None, T0))
    rsps.calls.reset()


def keep(target: str) -> str | None:
    return target


def test_declare_flags_through_the_incidents_api_then_sets_labels_property_and_priority(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    action = DeclareMajor(key="declare:1", target="1", rule="service-surge", mode="propose",
                          marker="mim:service-surge", fields={"priority": 1, "urgency": 1})
    with mock() as rsps:
        seen(platform, rsps, issue("1", "ITSM-1"))
        rsps.post(f"{INCIDENTS}/incident/1/major", status=204)
        rsps.put(f"{ISSUE}/1", status=204)
        [result] = platform.apply([action], keep)
        flag, sent = body(rsps.calls[0]), body(rsps.calls[1])
    assert result.status == "applied" and "urgency" in result.detail
    assert flag == {"majorIncident": True}  # the flag first: labels without it would read as a rejection
    assert sent["fields"] == {"priority": {"name": "Highest"}}
    assert sent["update"] == {"labels": [{"add": "mim-proposed"}, {"add": "mim-declared"}]}
    assert sent["properties"] == [{"key": "mim", "value": {
        "marker": "mim:service-surge", "declared": True, "mode": "propose", "rule": "service-surge",
        "declared_by": marker_tag("declare:1")}}]


def test_a_standard_site_refuses_the_major_incident_api_and_the_label_is_used(mapping: Mapping) -> None:
    platform, disc = discovered(mapping)
    with mock() as rsps:
        seen(platform, rsps, issue("1", "ITSM-1"), issue("2", "ITSM-2"))
        rsps.post(f"{INCIDENTS}/incident/1/major", status=403, json={"errorMessages": ["Premium only"], "errors": {}})
        rsps.put(f"{ISSUE}/1", status=204)
        rsps.put(f"{ISSUE}/2", status=204)  # the refusal is remembered: no second attempt
        results = platform.apply([DeclareMajor(key="declare:1", target="1", mode="accept", marker="mim:r"),
                                  DeclareMajor(key="declare:2", target="2", mode="accept", marker="mim:r")], keep)
        labels = [body(c)["update"]["labels"] for c in rsps.calls if c.request.method == "PUT"]
    assert [r.status for r in results] == ["applied", "applied"]
    assert labels == [[{"add": "major-incident"}, {"add": "mim-declared"}]] * 2
    assert disc["refused"] == ["major"]


def test_declare_without_the_field_uses_the_label_and_reads_when_uncertain(mapping: Mapping) -> None:
    platform, _ = discovered(mapping, fields=PLAIN_FIELDS)
    action = DeclareMajor(key="declare:1", target="1", rule="r", mode="accept", marker="mim:r")
    with mock() as rsps:
        rsps.get(f"{ISSUE}/1", json=issue("1", "ITSM-1"))
        rsps.put(f"{ISSUE}/1", status=204)
        [result] = platform.apply([action], keep, uncertain=frozenset({"declare:1"}))
        read, write = rsps.calls
    assert result.status == "applied"
    assert "properties=mim" in url(read)
    assert body(write)["update"] == {"labels": [{"add": "major-incident"}, {"add": "mim-declared"}]}
    assert "fields" not in body(write)


def test_declare_never_re_declares_what_a_human_unflagged(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    unflagged = issue("1", "ITSM-1", labels=["mim-declared"], customfield_10050=None,
                      prop={"marker": "mim:r", "declared": True})
    with mock() as rsps:
        seen(platform, rsps, unflagged)
        [result] = platform.apply([DeclareMajor(key="declare:1", target="1", mode="accept", marker="mim:r")], keep)
    assert result.status == "skipped" and "human" in result.detail


def test_declare_already_true_writes_nothing(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    done = issue("1", "ITSM-1", labels=["mim-proposed", "mim-declared"], customfield_10050="MAJOR_INCIDENT",
                 prop={"marker": "mim:r", "declared": True, "mode": "propose", "rule": "r",
                       "declared_by": marker_tag("declare:1")})
    with mock() as rsps:
        seen(platform, rsps, done)
        [result] = platform.apply([DeclareMajor(key="declare:1", target="1", rule="r", mode="propose",
                                                marker="mim:r")], keep)
    assert result.status == "skipped"


def test_create_parent_creates_an_incident_then_flags_it(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    action = CreateParent(key="create:new-1", target="new-1", rule="r", mode="accept", marker="mim:r:new-1",
                          fields={"title": "Major incident: service=web-shop", "description": "Created by mim",
                                  "service": "web-shop", "priority": 2})
    link = LinkChild(key="link:7:new-1", target="7", parent="new-1", rule="r")
    with mock() as rsps:
        rsps.post(ISSUE, status=201, json={"id": "20001", "key": "ITSM-50", "self": f"{ISSUE}/20001"})
        rsps.get(f"{ISSUE}/20001", json=issue("20001", "ITSM-50", labels=[marker_tag("create:new-1")],
                                             prop={"marker": "mim:r:new-1"}))
        rsps.post(f"{INCIDENTS}/incident/20001/major", status=204)
        rsps.get(f"{ISSUE}/7", json=issue("7", "ITSM-7"))
        rsps.post(f"{URL}/rest/api/3/issueLink", status=201)
        rsps.put(f"{ISSUE}/20001", status=204)  # labels and property: one edit, sent when the apply ends
        created, linked = platform.apply([action, link], lambda target: None)
        create_body, major_body, link_body, flag_body = (body(rsps.calls[i]) for i in (0, 2, 4, 5))
    assert (created.status, created.created_id, created.created_key) == ("applied", "20001", "ITSM-50")
    fields = create_body["fields"]
    assert fields["project"] == {"key": "ITSM"} and fields["issuetype"] == {"id": "10001"}
    assert fields["summary"] == "Major incident: service=web-shop" and fields["components"] == [{"name": "web-shop"}]
    assert fields["priority"] == {"name": "High"} and fields["labels"] == [marker_tag("create:new-1")]
    assert fields["description"] == adf_document("Created by mim")
    assert create_body["properties"][0]["value"]["marker"] == "mim:r:new-1"
    assert "declared" not in create_body["properties"][0]["value"]  # only once the flag is on
    assert major_body == {"majorIncident": True} and "fields" not in flag_body
    assert flag_body["properties"][0]["value"]["declared"] is True
    assert linked.status == "applied"  # the dependant got the real id within the same apply
    assert link_body["inwardIssue"] == {"id": "20001"} and link_body["outwardIssue"] == {"id": "7"}


def test_a_created_parent_that_cannot_be_flagged_keeps_its_id(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        rsps.post(ISSUE, status=201, json={"id": "20001", "key": "ITSM-50"})
        rsps.get(f"{ISSUE}/20001", json=issue("20001", "ITSM-50"))
        rsps.post(f"{INCIDENTS}/incident/20001/major", status=400,
                  json={"errorMessages": ["Field cannot be set."], "errors": {}})
        created, linked = platform.apply([
            CreateParent(key="create:new-1", target="new-1", mode="accept", marker="mim:r:new-1"),
            LinkChild(key="link:7:new-1", target="7", parent="new-1")], lambda target: None)
    assert (created.status, created.created_id, created.created_key) == ("failed", "20001", "ITSM-50")
    assert "could not flag" in created.detail and "Field cannot be set." in created.detail
    assert linked.status == "failed"


def test_uncertain_create_parent_finds_its_label_and_creates_nothing(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    tag = marker_tag("create:new-1")
    found = issue("20001", "ITSM-50", labels=[tag, "mim-declared"], customfield_10050="MAJOR_INCIDENT",
                  prop={"marker": "mim:r:new-1", "declared": True, "mode": "accept", "rule": "r", "declared_by": tag})
    with mock() as rsps:
        rsps.post(SEARCH, json=page(found))
        rsps.get(f"{ISSUE}/20001", json=found)
        [result] = platform.apply([CreateParent(key="create:new-1", target="new-1", rule="r", mode="accept",
                                                marker="mim:r:new-1")], keep, uncertain=frozenset({"create:new-1"}))
        jql = body(rsps.calls[0])["jql"]
    assert (result.status, result.created_id, result.created_key) == ("skipped", "20001", "ITSM-50")
    assert jql == f'project = "ITSM" AND labels = "{tag}" ORDER BY key ASC'


def test_a_create_whose_answer_was_lost_is_looked_up_before_it_is_resent(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    tag = marker_tag("create:new-1")
    with mock() as rsps:
        rsps.post(ISSUE, status=502, json={})  # maybe created, answer lost
        rsps.post(SEARCH, json=page(issue("20001", "ITSM-50", labels=[tag])))
        rsps.get(f"{ISSUE}/20001", json=issue("20001", "ITSM-50", labels=[tag]))
        rsps.post(f"{INCIDENTS}/incident/20001/major", status=204)
        rsps.put(f"{ISSUE}/20001", status=204)
        [result] = platform.apply([CreateParent(key="create:new-1", target="new-1", rule="r", mode="accept",
                                                marker="mim:r:new-1", fields={"title": "t"})], keep)
        creates = [c for c in rsps.calls if c.request.method == "POST" and url(c) == ISSUE]
    assert (result.status, result.created_key) == ("applied", "ITSM-50")
    assert len(creates) == 1


def test_link_is_skipped_when_the_child_already_has_it(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        seen(platform, rsps, issue("2", "ITSM-2", links=[caused_by("1", "ITSM-1")]))
        [result] = platform.apply([LinkChild(key="link:2:1", target="2", parent="1")], keep)
    assert result.status == "skipped"


def test_uncertain_link_reads_fresh_links_first(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        seen(platform, rsps, issue("2", "ITSM-2"))  # stale copy without the link
        rsps.post(SEARCH, json=page(issue("2", "ITSM-2", links=[caused_by("1", "ITSM-1")])))
        [result] = platform.apply([LinkChild(key="link:2:1", target="2", parent="1")], keep,
                                  uncertain=frozenset({"link:2:1"}))
        read = body(rsps.calls[0])
    assert result.status == "skipped"
    # every uncertain child of the apply read by one search (50 at most), reconciled: Cloud search lags writes
    assert "id IN (2)" in read["jql"] and read["reconcileIssues"] == [2] and "issuelinks" in read["fields"]


def test_link_direction_major_causes_child_and_the_link_is_the_only_request(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        seen(platform, rsps, issue("1", "ITSM-1"), issue("2", "ITSM-2", prop={"note": "kept"}))
        rsps.post(f"{URL}/rest/api/3/issueLink", status=201)
        [result] = platform.apply([LinkChild(key="link:2:1", target="2", parent="1", rule="r")], keep)
        [link] = [body(c) for c in rsps.calls]
    assert result.status == "applied" and result.detail == "ITSM-1 causes ITSM-2"
    assert link == {"type": {"name": "Problem/Incident"}, "inwardIssue": {"id": "1"}, "outwardIssue": {"id": "2"}}


def test_links_to_a_parent_whose_creation_failed_fail_without_a_request(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        rsps.post(ISSUE, status=400, json={"errorMessages": [], "errors": {"priority": "Priority is required"}})
        rsps.post(f"{ISSUE}/8/comment", status=201, json={"id": "1"})
        created, linked, note = platform.apply([
            CreateParent(key="create:new-1", target="new-1", mode="accept", marker="mim:r:new-1"),
            LinkChild(key="link:7:new-1", target="7", parent="new-1"),
            AddNote(key="note:other", target="8", text="unrelated"),
        ], lambda target: None)
    assert created.status == "failed" and not created.retryable and "priority: Priority is required" in created.detail
    assert linked.status == "failed" and "create:new-1" in linked.detail and linked.retryable
    assert note.status == "applied"


def test_failures_do_not_stop_independent_actions(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        rsps.post(f"{ISSUE}/1/comment", status=413, json={"errorMessages": ["The issue has too many comments."]})
        rsps.post(f"{ISSUE}/2/comment", status=201, json={"id": "5"})
        first, second, notify = platform.apply([
            AddNote(key="note:1", target="1", text="a"), AddNote(key="note:2", target="2", text="b"),
            Notify(key="notify:1", target="1", channel="teams", url="https://hooks.example/x"),
        ], keep)
    assert (first.status, first.retryable) == ("failed", False) and "too many comments" in first.detail
    assert second.status == "applied" and notify.status == "skipped"


def test_cloud_note_is_adf_internal_and_tagged(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        rsps.post(f"{ISSUE}/1/comment", status=201, json={"id": "100"})
        [result] = platform.apply([AddNote(key="note:1:declared", target="1", text="Declared by rule r.")], keep)
        sent = body(rsps.calls[0])
    assert result.status == "applied"
    assert sent["body"] == adf_document(f"Declared by rule r.\n[{marker_tag('note:1:declared')}]")
    assert sent["properties"] == [{"key": "sd.public.comment", "value": {"internal": True}}]


def test_uncertain_note_reads_comments_and_skips_when_tagged(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    tag = marker_tag("note:1:declared")
    with mock() as rsps:
        rsps.get(f"{ISSUE}/1/comment", json={"startAt": 0, "maxResults": 1, "total": 2, "comments": [
            {"id": "1", "body": adf_document("a human comment")}]})
        rsps.get(f"{ISSUE}/1/comment", json={"startAt": 1, "maxResults": 1, "total": 2, "comments": [
            {"id": "2", "body": adf_document(f"Declared.\n[{tag}]")}]})
        [result] = platform.apply([AddNote(key="note:1:declared", target="1", text="Declared.")], keep,
                                  uncertain=frozenset({"note:1:declared"}))
        assert "startAt=1" in url(rsps.calls[1])
    assert result.status == "skipped"


def test_uncertain_note_without_tag_is_written(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        rsps.get(f"{ISSUE}/1/comment", json={"startAt": 0, "maxResults": 100, "total": 0, "comments": []})
        rsps.post(f"{ISSUE}/1/comment", status=201, json={"id": "3"})
        [result] = platform.apply([AddNote(key="note:1", target="1", text="x", internal=False)], keep,
                                  uncertain=frozenset({"note:1"}))
        sent = body(rsps.calls[1])
    assert result.status == "applied"
    # a public comment: customers read it, so its marker is a comment property, never a line of its text
    assert sent["body"] == adf_document("x")
    assert sent["properties"] == [{"key": "mim", "value": {"tag": marker_tag("note:1")}}]


def test_an_uncertain_public_comment_is_recognised_by_its_text_and_author(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        rsps.get(f"{ISSUE}/1/comment", json={"startAt": 0, "maxResults": 100, "total": 2, "comments": [
            {"id": "1", "body": adf_document("Service restored."), "author": {"accountId": "a-human"}},
            {"id": "2", "body": adf_document("Service restored."), "author": {"accountId": "bot-account"}}]})
        [result] = platform.apply([AddNote(key="note:1", target="1", text="Service restored.", internal=False)], keep,
                                  uncertain=frozenset({"note:1"}))
    assert result.status == "skipped"


def test_dc_note_is_plain_text(mapping: Mapping) -> None:
    platform, _ = discovered(mapping, "dc")
    with mock() as rsps:
        rsps.post(f"{DC_URL}/rest/api/2/issue/1/comment", status=201, json={"id": "1"})
        platform.apply([AddNote(key="note:1", target="1", text="plain")], keep)
        assert body(rsps.calls[0])["body"] == f"plain\n[{marker_tag('note:1')}]"


@pytest.mark.parametrize("flavour, user, expected", [("cloud", ACCOUNT, {"accountId": ACCOUNT}),
                                                     ("dc", "jdoe", {"name": "jdoe"})])
def test_set_fields_priority_assignee_and_state_by_transition(mapping: Mapping, flavour: str, user: str,
                                                              expected: dict[str, str]) -> None:
    platform, _ = discovered(mapping, flavour)
    base = f"{DC_URL}/rest/api/2" if flavour == "dc" else f"{URL}/rest/api/3"
    action = SetFields(key="fields:1", target="1", fields={"priority": 1, "assignee": user, "state": "resolved",
                                                           "assignment_group": "mit"})
    with mock() as rsps:
        rsps.put(f"{base}/issue/1/assignee", status=204)
        rsps.put(f"{base}/issue/1", status=204)  # the edit waits for the transition (same issue): sent first
        rsps.get(f"{base}/issue/1/transitions", json={"transitions": [
            {"id": "11", "name": "Start progress", "to": {"name": "In Progress"}},
            {"id": "31", "name": "Resolve", "to": {"name": "Resolved"}}]})
        rsps.post(f"{base}/issue/1/transitions", status=204)
        [result] = platform.apply([action], keep)
        assign, edit, transition = (body(c) for c in rsps.calls if c.request.method != "GET")
    assert result.status == "applied" and "assignment_group" in result.detail
    assert edit == {"fields": {"priority": {"name": "Highest"}}}
    assert assign == expected
    assert transition == {"transition": {"id": "31"}}


def test_cloud_assignee_named_by_the_process_file_is_looked_up_once(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    people = [{"accountId": "5b10ac8d82e05b22cc7d4e09", "displayName": "On-call Duty Desk",
               "emailAddress": "oncall.duty.desk@acme.example"},
              {"accountId": ACCOUNT, "displayName": "On-call", "emailAddress": "oncall.duty@acme.example"}]
    with mock() as rsps:
        rsps.get(f"{URL}/rest/api/3/user/search", json=people)
        rsps.put(f"{ISSUE}/1/assignee", status=204)
        rsps.put(f"{ISSUE}/2/assignee", status=204)
        results = platform.apply([SetFields(key="a1", target="1", fields={"assignee": "oncall.duty"}),
                                  SetFields(key="a2", target="2", fields={"assignee": "oncall.duty"})], keep)
        assert "query=oncall.duty" in url(rsps.calls[0])
        assert [body(c) for c in list(rsps.calls)[1:]] == [{"accountId": ACCOUNT}] * 2
    assert [r.status for r in results] == ["applied", "applied"]


def test_cloud_assignee_matching_no_single_user_fails_without_writing(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        rsps.get(f"{URL}/rest/api/3/user/search", json=[])
        [result] = platform.apply([SetFields(key="a", target="1", fields={"assignee": "nobody.here"})], keep)
    assert result.status == "failed" and not result.retryable and "no Jira users match 'nobody.here'" in result.detail


def test_set_fields_without_a_transition_to_the_target_fails_clearly(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        rsps.get(f"{ISSUE}/1/transitions", json={"transitions": [{"id": "51", "name": "Reopen", "to": {"name": "Open"}}]})
        rsps.get(f"{ISSUE}/1", json={"id": "1", "fields": {"status": {"name": "Closed"}}})
        [result] = platform.apply([SetFields(key="f", target="1", fields={"state": "resolved"})], keep)
    assert result.status == "failed" and "Resolved" in result.detail and "Open" in result.detail


def test_a_state_the_issue_is_already_in_is_not_a_missing_transition(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        rsps.get(f"{ISSUE}/1/transitions", json={"transitions": [{"id": "51", "name": "Reopen", "to": {"name": "Open"}}]})
        rsps.get(f"{ISSUE}/1", json={"id": "1", "fields": {"status": {"name": "Resolved"}}})
        [result] = platform.apply([SetFields(key="f", target="1", fields={"state": "resolved"})], keep)
    assert result.status == "skipped" and result.detail == "already set"


def test_set_stage_writes_the_field_when_discovered(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        rsps.put(f"{ISSUE}/1", status=204)
        [result] = platform.apply([SetStage(key="stage:1:containment", target="1", stage="containment")], keep)
        assert body(rsps.calls[0]) == {"fields": {"customfield_10060": "Containment"}}
    assert result.status == "applied"


def test_set_stage_uses_labels_and_removes_the_other_stages(mapping: Mapping) -> None:
    platform, _ = discovered(mapping, fields=PLAIN_FIELDS)
    with mock() as rsps:
        rsps.put(f"{ISSUE}/1", status=204)
        platform.apply([SetStage(key="stage:1:containment", target="1", stage="containment")], keep)
        ops = body(rsps.calls[0])["update"]["labels"]
    assert {"add": "mim-stage-containment"} in ops and {"remove": "mim-stage-identification"} in ops
    assert {"remove": "mim-stage-containment"} not in ops


def test_set_stage_already_there_is_skipped(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        seen(platform, rsps, issue("1", "ITSM-1", customfield_10060="Identification"))
        [result] = platform.apply([SetStage(key="s", target="1", stage="identification")], keep)
    assert result.status == "skipped"


def test_review_task_falls_back_to_task_and_is_linked_with_relates(mapping: Mapping) -> None:
    no_pir = [t for t in ISSUE_TYPES if t["name"] != "Post-incident review"]
    platform, _ = discovered(mapping, issue_types=no_pir)
    due = datetime(2024, 1, 18, 9, 0, tzinfo=UTC)
    action = CreateTask(key="task:1:pir", target="1", title="Post-incident review meeting", description="Agenda",
                        owner=ACCOUNT, due=due)
    with mock() as rsps:
        rsps.post(ISSUE, status=201, json={"id": "30001", "key": "ITSM-60"})
        rsps.post(f"{URL}/rest/api/3/issueLink", status=201)
        rsps.put(f"{ISSUE}/30001/assignee", status=204)
        [result] = platform.apply([action], keep)
        created, link = body(rsps.calls[0]), body(rsps.calls[1])
    assert (result.status, result.created_key) == ("applied", "ITSM-60")
    assert created["fields"]["issuetype"] == {"id": "10004"} and created["fields"]["duedate"] == "2024-01-18"
    assert created["fields"]["labels"] == [marker_tag("task:1:pir")]
    assert adf_plain_text(created["fields"]["description"]) == "Agenda\nDue: 2024-01-18"
    assert link == {"type": {"name": "Relates"}, "inwardIssue": {"id": "1"}, "outwardIssue": {"id": "30001"}}


def test_review_task_owner_that_cannot_be_assigned_does_not_fail_the_task(mapping: Mapping) -> None:
    platform, _ = discovered(mapping, fields=PLAIN_FIELDS)
    with mock() as rsps:
        rsps.get(f"{ISSUE}/1", json=issue("1", "ITSM-1"))  # the major incident's links: no review issue yet
        rsps.post(ISSUE, status=201, json={"id": "30001", "key": "ITSM-60"})
        rsps.post(f"{URL}/rest/api/3/issueLink", status=201)
        rsps.put(f"{ISSUE}/30001/assignee", status=404, json={"errorMessages": ["User 'x' does not exist."]})
        [result] = platform.apply([CreateTask(key="t", target="1", title="RCA", owner=ACCOUNT,
                                              due=datetime(2024, 1, 20, tzinfo=UTC))], keep)
        assert "duedate" not in body(rsps.calls[1])["fields"]  # the site has no due date field
    assert result.status == "applied" and "not assigned" in result.detail


def test_uncertain_change_found_by_label_is_relinked_if_needed(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    tag = marker_tag("change:1")
    with mock() as rsps:
        rsps.post(SEARCH, json=page(issue("40001", "ITSM-70", labels=[tag])))
        rsps.post(f"{URL}/rest/api/3/issueLink", status=201)
        [result] = platform.apply([CreateChange(key="change:1", target="1", title="Fix")], keep,
                                  uncertain=frozenset({"change:1"}))
        assert body(rsps.calls[1])["outwardIssue"] == {"id": "40001"}
    assert (result.status, result.created_id) == ("skipped", "40001")


def test_change_is_created_with_its_type_and_linked(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        rsps.post(ISSUE, status=201, json={"id": "40001", "key": "ITSM-70"})
        rsps.post(f"{URL}/rest/api/3/issueLink", status=201)
        [result] = platform.apply([CreateChange(key="change:1", target="1", title="Roll back release",
                                                description="Plan", group="web-team")], keep)
        created = body(rsps.calls[0])
    assert result.status == "applied" and created["fields"]["issuetype"] == {"id": "10003"}
    assert adf_plain_text(created["fields"]["description"]) == "Plan\nChange type: normal\nGroup: web-team"
    assert created["properties"][0]["value"]["kind"] == "change"


def test_resolve_child_transitions_an_open_child_with_a_tagged_comment(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        rsps.get(f"{ISSUE}/2", json=issue("2", "ITSM-2", prop={"parent": "1"}))
        rsps.get(f"{ISSUE}/2/transitions", json={"transitions": [
            {"id": "31", "name": "Resolve", "to": {"name": "Resolved"},
             "fields": {"resolution": {"required": True, "name": "Resolution"}}}]})
        rsps.post(f"{ISSUE}/2/transitions", status=204)
        rsps.post(f"{ISSUE}/2/comment", status=201, json={"id": "9"})
        [result] = platform.apply([ResolveChild(key="resolve:2", target="2", parent="1", notes="Rolled back.")], keep)
        sent, comment = body(rsps.calls[2]), body(rsps.calls[3])
    assert result.status == "applied"
    assert sent["transition"] == {"id": "31"} and sent["fields"] == {"resolution": {"name": "Done"}}
    # the note is a comment of its own: a comment inside the transition might not be kept internal
    assert "update" not in sent
    assert adf_plain_text(comment["body"]) == f"Rolled back.\n[{marker_tag('resolve:2')}]"
    assert comment["properties"] == [{"key": "sd.public.comment", "value": {"internal": True}}]
    assert sent["properties"][0]["value"] == {"parent": "1", "resolved_by": marker_tag("resolve:2")}


def test_a_child_resolved_before_its_note_went_out_gets_the_note_when_uncertain(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    tag = marker_tag("resolve:2")
    with mock() as rsps:
        rsps.get(f"{ISSUE}/2", json=issue("2", "ITSM-2", status="done", prop={"resolved_by": tag}))
        rsps.get(f"{ISSUE}/2/comment", json={"startAt": 0, "maxResults": 100, "total": 0, "comments": []})
        rsps.post(f"{ISSUE}/2/comment", status=201, json={"id": "9"})
        [result] = platform.apply([ResolveChild(key="resolve:2", target="2", parent="1", notes="Rolled back.")], keep,
                                  uncertain=frozenset({"resolve:2"}))
    assert result.status == "applied" and "note added" in result.detail


def test_resolve_child_already_done_is_skipped(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        rsps.get(f"{ISSUE}/2", json=issue("2", "ITSM-2", status="done"))
        [result] = platform.apply([ResolveChild(key="resolve:2", target="2", parent="1")], keep)
    assert result.status == "skipped"


def test_a_transition_whose_answer_was_lost_is_checked_before_resending(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        rsps.get(f"{ISSUE}/1/transitions", json={"transitions": [{"id": "31", "to": {"name": "Resolved"}}]})
        rsps.post(f"{ISSUE}/1/transitions", body=requests.ConnectionError("reset"))
        rsps.get(f"{ISSUE}/1", json={"id": "1", "fields": {"status": {"name": "Resolved"}}})
        [result] = platform.apply([SetFields(key="f", target="1", fields={"state": "resolved"})], keep)
    assert result.status == "applied"


def test_writes_to_an_issue_are_sent_one_at_a_time_in_order(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        seen(platform, rsps, issue("1", "ITSM-1"))
        rsps.post(f"{INCIDENTS}/incident/1/major", status=204)
        rsps.post(f"{ISSUE}/1/comment", status=201, json={"id": "1"})
        rsps.put(f"{ISSUE}/1", status=204)
        results = platform.apply([DeclareMajor(key="declare:1", target="1", mode="accept", marker="mim:r"),
                                  AddNote(key="note:1", target="1", text="n"),
                                  SetStage(key="stage:1", target="1", stage="identification")], keep)
        order = [(c.request.method, url(c).split("/rest/api/3")[-1]) for c in rsps.calls]
        edit = body(rsps.calls[2])
    # one request at a time; the declaration's labels and property and the stage are one edit of the issue
    assert order == [("POST", f"{INCIDENTS}/incident/1/major"), ("POST", "/issue/1/comment"), ("PUT", "/issue/1")]
    assert edit["fields"] == {"customfield_10060": "Identification"} and "labels" in edit["update"]
    assert [r.status for r in results] == ["applied"] * 3


def test_a_combined_edit_that_fails_fails_every_action_in_it(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        rsps.post(f"{ISSUE}/2/comment", status=201, json={"id": "1"})
        rsps.put(f"{ISSUE}/1", status=400, json={"errorMessages": [], "errors": {"priority": "bad"}})
        results = platform.apply([SetStage(key="stage:1", target="1", stage="containment"),
                                  AddNote(key="note:2", target="2", text="n"),
                                  SetFields(key="fields:1", target="1", fields={"priority": 1})], keep)
    assert [r.status for r in results] == ["failed", "applied", "failed"]
    assert all("priority: bad" in r.detail for r in (results[0], results[2]))


def test_fresh_writes_are_reconciled_by_the_next_cloud_poll(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock() as rsps:
        rsps.post(f"{ISSUE}/10005/comment", status=201, json={"id": "1"})
        rsps.post(SEARCH, json=page())
        rsps.post(SEARCH, json=page())
        platform.apply([AddNote(key="n", target="10005", text="x")], keep)
        list(platform.fetch_changed(None, T0))
        list(platform.fetch_changed(None, T0))
        first, second = body(rsps.calls[1]), body(rsps.calls[2])
    assert first["reconcileIssues"] == [10005] and "reconcileIssues" not in second



# ---------------------------------------------------------------------------------------------- mim doctor


def test_doctor_checks_report_missing_permissions_fields_and_issue_types(mapping: Mapping) -> None:
    no_change = [t for t in ISSUE_TYPES if t["name"] != "Change"]
    platform, disc = discovered(mapping, issue_types=no_change)
    granted = {p: {"havePermission": p != "LINK_ISSUES"} for p in JiraPlatform.PERMISSIONS}
    with mock() as rsps:
        rsps.get(f"{URL}/rest/api/3/project/ITSM", json={"key": "ITSM", "name": "IT Service Management"})
        rsps.get(f"{URL}/rest/api/3/mypermissions", json={"permissions": granted})
        rsps.get(f"{URL}/rest/api/3/field", json=[f for f in FIELDS if f["id"] != "customfield_10060"])
        checks = {name: (ok, detail) for name, ok, detail, _ in platform.doctor_checks(disc)}
        assert "projectKey=ITSM" in url(rsps.calls[1])
        assert all(c.request.method == "GET" for c in rsps.calls)  # doctor never writes
    assert checks["project ITSM"] == (True, "IT Service Management is readable")
    assert checks["permissions"][0] is False and "LINK_ISSUES" in checks["permissions"][1]
    # The mapped system fields are not in this short field list; the stage field went missing.
    assert checks["mapped fields"][0] is False and "customfield_10060" in checks["mapped fields"][1]
    assert checks["major incident field"] == (True, "MI flag (renamed) (customfield_10050)")
    assert checks["issue type change"][0] is False and checks["issue type incident"][0] is True


def test_plain_http_is_refused_for_a_real_site() -> None:
    from connector.core.mapping import load_mapping
    from connector.core.settings import SettingsError
    from connector.platforms.jira import JiraPlatform

    mapping, _ = load_mapping(Path(__file__).resolve().parent.parent / "mappings" / "jira.yaml")
    with pytest.raises(SettingsError, match="https"):
        JiraPlatform("http://example.atlassian.net", "a@example.com", "token", mapping)


# -- reading back the change and the review tasks --------------------------------------------------------------


def relates(other_id: str, other_key: str, type_id: str, type_name: str, status: str, category: str,
            summary: str = "", side: str = "outwardIssue") -> dict[str, Any]:
    """An ``issuelinks`` entry seen from the major incident: "MAJOR relates to OTHER"."""
    return {"id": f"7{other_id}", "type": {"id": "10003", "name": "Relates", "inward": "relates to",
                                            "outward": "relates to"},
            side: {"id": other_id, "key": other_key,
                   "fields": {"summary": summary or f"issue {other_key}", "issuetype": {"id": type_id, "name": type_name},
                              "status": {"name": status, "statusCategory": {"key": category}}}}}


@pytest.mark.parametrize("flavour", ["cloud", "dc"])
def test_fetch_followups_reads_the_major_incidents_then_their_reviews(mapping: Mapping, flavour: str) -> None:
    platform, _ = discovered(mapping, flavour)
    base = DC_URL if flavour == "dc" else URL
    endpoint = f"{base}/rest/api/3/search/jql" if flavour == "cloud" else f"{base}/rest/api/2/search"
    majors = [
        issue("100", "ITSM-1", links=[
            relates("201", "ITSM-11", "10002", "Post-incident review", "Open", "new", "Review of ITSM-1"),
            relates("203", "ITSM-13", "10003", "Change", "Implementing", "indeterminate", side="inwardIssue"),
            relates("204", "ITSM-14", "10001", "[System] Incident", "Open", "new"),  # a related incident: not ours
            caused_by("100", "ITSM-1")]),
        issue("101", "ITSM-2", links=[
            # a review issue with no task of its own (as an older version made them) counts as a task
            relates("205", "ITSM-15", "10002", "Post-incident review", "Won't Do", "done"),
            relates("206", "ITSM-16", "10003", "Change", "Done", "done")]),
    ]
    reviews = [
        issue("201", "ITSM-11", links=[
            relates("211", "ITSM-21", "10004", "Task", "Closed", "done", "Review meeting (ITSM-1)"),
            relates("212", "ITSM-22", "10004", "Task", "In Progress", "indeterminate", "Root cause"),
            relates("100", "ITSM-1", "10001", "[System] Incident", "Open", "new", side="inwardIssue")]),
        issue("205", "ITSM-15"),
    ]

    def answer(found: list[dict[str, Any]]) -> dict[str, Any]:
        return {"issues": found, "isLast": True} if flavour == "cloud" else {"issues": found, "total": len(found)}

    with mock() as rsps:
        rsps.post(endpoint, json=answer(majors))
        rsps.post(endpoint, json=answer(reviews))
        found = platform.fetch_followups(["100", "101", "new-x"])
        first, second = (body(c) for c in rsps.calls)
    assert first["jql"] == "project = \"ITSM\" AND id IN (100, 101) ORDER BY key ASC"
    assert second["jql"] == "project = \"ITSM\" AND id IN (201, 205) ORDER BY key ASC"
    assert first["fields"] == second["fields"] == ["issuelinks"]
    assert found["100"]["change"] == {"id": "203", "key": "ITSM-13", "state": "in_progress"}
    assert [(t["key"], t["state"], t["title"]) for t in found["100"]["tasks"]] == [
        ("ITSM-21", "closed", "Review meeting (ITSM-1)"), ("ITSM-22", "in_progress", "Root cause")]
    assert found["101"] == {"change": {"id": "206", "key": "ITSM-16", "state": "resolved"},
                            "tasks": [{"id": "205", "key": "ITSM-15", "state": "canceled", "title": "issue ITSM-15"}]}
    assert found["new-x"] == {"change": None, "tasks": []}


def test_fetch_followups_with_no_issue_ids_sends_nothing(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    with mock():
        assert platform.fetch_followups(["new-1"]) == {"new-1": {"change": None, "tasks": []}}


def test_fetch_followups_asks_by_id_in_chunks_and_reconciles_on_cloud(mapping: Mapping) -> None:
    platform, _ = discovered(mapping)
    ids = [str(10000 + n) for n in range(60)]
    with mock() as rsps:
        rsps.post(SEARCH, json=page(issue("10000", "ITSM-1")))
        rsps.post(SEARCH, json=page(issue("10059", "ITSM-60", links=[
            relates("206", "ITSM-16", "10003", "Change", "Done", "done")])))
        found = platform.fetch_followups(ids + ["new-abc", "10000"])
        first, second = (body(c) for c in rsps.calls)
    assert found["10059"]["change"] == {"id": "206", "key": "ITSM-16", "state": "resolved"}
    assert first["jql"].startswith('project = "ITSM" AND id IN (10000, 10001') and len(first["reconcileIssues"]) == 50
    assert second["reconcileIssues"] == [int(i) for i in ids[50:]]
    assert "new-abc" not in first["jql"] + second["jql"]


def test_edits_of_one_issue_merge_unless_jira_would_refuse_the_merge() -> None:
    from connector.platforms.jira.edits import EditBuffer, merge

    body: dict[str, Any] = {"update": {"labels": [{"add": "a"}]}, "properties": [{"key": "mim", "value": 1}]}
    assert merge(body, {"fields": {"priority": {"name": "High"}}, "properties": [{"key": "mim", "value": 2}]})
    assert body == {"update": {"labels": [{"add": "a"}]}, "fields": {"priority": {"name": "High"}},
                    "properties": [{"key": "mim", "value": 2}]}
    assert not merge(body, {"fields": {"labels": ["x"]}})  # a field in both fields and update: Jira refuses it
    sent: list[tuple[str, dict[str, Any]]] = []
    edits = EditBuffer(lambda issue_id, edit: sent.append((issue_id, edit)))
    edits.add("1", {"update": {"labels": [{"add": "a"}]}}, "k1")
    edits.add("1", {"fields": {"labels": ["b"]}}, "k2")  # cannot join: the first goes out first
    edits.add("2", {"fields": {"summary": "s"}}, "k3")
    assert sent == [("1", {"update": {"labels": [{"add": "a"}]}})]
    edits.flush_all()
    assert sent[1:] == [("1", {"fields": {"labels": ["b"]}}), ("2", {"fields": {"summary": "s"}})]


def test_doctor_notes_a_mapping_project_that_is_not_read(mapping: Mapping) -> None:
    from connector.core.mapping import Mapping as Loaded

    spec = mapping.spec.model_copy(update={"write": mapping.write.model_copy(update={"project": "OLD"})})
    platform, disc = discovered(Loaded(spec, mapping.path))
    granted = {p: {"havePermission": True} for p in JiraPlatform.PERMISSIONS}
    with mock() as rsps:
        rsps.get(f"{URL}/rest/api/3/project/ITSM", json={"key": "ITSM", "name": "IT Service Management"})
        rsps.get(f"{URL}/rest/api/3/mypermissions", json={"permissions": granted})
        rsps.get(f"{URL}/rest/api/3/field", json=FIELDS)
        checks = {name: (ok, detail) for name, ok, detail, _ in platform.doctor_checks(disc)}
    assert checks["write.project"][0] is True and "'OLD' in the mapping is not read" in checks["write.project"][1]
