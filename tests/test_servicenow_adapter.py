"""The ServiceNow adapter at the HTTP boundary: paging, the retry table, query escaping and every write verb.

Every test mocks HTTP with ``responses`` (unused mocks fail the test; page sequences use the ordered
registry) and passes a retry policy whose ``sleep`` records instead of waiting.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from pydantic import SecretStr
from responses import matchers
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
from connector.core.mapping import Mapping, MappingFile, load_mapping
from connector.core.settings import ServiceNowSettings, SettingsError
from connector.platforms.base import Platform, Watermark, marker_tag
from connector.platforms.errors import (
    AuthenticationError,
    ClientError,
    Conflict,
    NotFound,
    PermissionDenied,
    ResponseAction,
    TransientError,
    UnexpectedResponse,
)
from connector.platforms.retry import (
    EMPTY_202,
    OTHER_4XX,
    OTHER_STATUS,
    RETRY_AFTER_503,
    SERVICENOW_TABLE,
    UNREADABLE_2XX,
    Condition,
    RetryPolicy,
)
from connector.platforms.servicenow import PagingStalled, QueryValueError, ServiceNowPlatform, query_value

ROOT = Path(__file__).resolve().parent.parent
BASE = "https://acme.service-now.com"
TABLE = f"{BASE}/api/now/table/incident"
BATCH = f"{BASE}/api/now/v1/batch"
JOURNAL = f"{BASE}/api/now/table/sys_journal_field"
PASSWORD = "pw-Very-Secret-4711"
CLIENT_SECRET = "cs-Also-Secret-0815"
T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=timezone.utc)
MI = "a" * 32
ME = "e" * 32
"""The integration user's sys_id."""
CHILDREN = ["c" * 31 + str(i) for i in range(1, 6)]


def facts(**changes: Any) -> dict[str, Any]:
    """Cached discovery facts as the state store would hand them over (a fresh copy each time)."""
    return {"version": 2, "stage_field": "u_mim_stage", "marker_field": "u_mim_marker", "groups": {},
            "users": {"mim.integration": ME}, **changes}


def sid(n: int) -> str:
    return f"{n:032x}"


@pytest.fixture(scope="module")
def mapping() -> Mapping:
    loaded, errors = load_mapping(ROOT / "mappings" / "servicenow.yaml")
    assert loaded is not None, errors
    return loaded


def with_write(mapping: Mapping, **settings: Any) -> Mapping:
    spec = mapping.spec.model_dump()
    spec["write"] = {**spec["write"], **settings}
    return Mapping(MappingFile.model_validate(spec), mapping.path)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make(mapping: Mapping, sleeps: list[float]) -> Callable[..., ServiceNowPlatform]:
    def build(**kwargs: Any) -> ServiceNowPlatform:
        kwargs.setdefault("policy", RetryPolicy(sleep=sleeps.append))
        use_mapping = kwargs.pop("mapping", mapping)
        return ServiceNowPlatform(kwargs.pop("url", BASE), "mim.integration", PASSWORD, use_mapping, **kwargs)

    return build


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True, registry=OrderedRegistry) as mock:
        yield mock


def row(sys_id: str, updated: str = "2024-05-01 10:00:00", mod: int = 0, **extra: str) -> dict[str, str]:
    return {"sys_id": sys_id, "number": f"INC{int(sys_id[-6:], 16) % 10**7:07d}", "sys_updated_on": updated,
            "sys_mod_count": str(mod), "opened_at": "2024-05-01 09:50:00", "state": "1",
            "major_incident_state": "", "parent_incident": "", "business_service": "b" * 32, **extra}


def page(rows: list[dict[str, Any]], link: str | None = None, total: int | None = None) -> dict[str, Any]:
    headers = {"X-Total-Count": str(total if total is not None else len(rows))}
    if link:
        headers["Link"] = f'<{link}>;rel="next"'
    return {"json": {"result": rows}, "headers": headers}


def query_of(call: Any) -> str:
    return str(parse_qs(urlsplit(call.request.url).query)["sysparm_query"][0])


def params_of(call: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query, keep_blank_values=True).items()}


def sent_kwargs(call: Any) -> dict[str, Any]:
    """The keyword arguments requests passed to the adapter (``responses`` records them)."""
    kwargs: dict[str, Any] = call.request.req_kwargs
    return kwargs


def body_of(call: Any) -> Any:
    return json.loads(call.request.body)


def batch_items(call: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = body_of(call)["rest_requests"]
    for item in items:
        item["decoded"] = json.loads(base64.b64decode(item["body"]))
    return items


def batch_answer(ids: list[str], status: int = 200, unserviced: Sequence[str] = (),
                 errors: dict[str, tuple[int, str]] | None = None,
                 results: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    serviced = []
    for ident in ids:
        code, message = (errors or {}).get(ident, (status, ""))
        body = ({"result": {"sys_id": "x", **(results or {}).get(ident, {})}} if code < 400
                else {"error": {"message": message, "detail": "secret detail"}})
        serviced.append({"id": ident, "status_code": code, "status_text": "", "headers": [],
                         "body": base64.b64encode(json.dumps(body).encode()).decode()})
    return {"batch_request_id": "1", "serviced_requests": serviced, "unserviced_requests": list(unserviced)}


def ident(target: str) -> str:
    return target


# -- the contract --------------------------------------------------------------------------------


def test_adapter_fulfils_the_platform_protocol(make: Callable[..., ServiceNowPlatform]) -> None:
    platform = make()
    assert isinstance(platform, Platform)
    assert platform.base_url == BASE
    assert platform.requests_sent == 0


def test_to_ticket_goes_through_the_mapping(make: Callable[..., ServiceNowPlatform]) -> None:
    ticket = make().to_ticket(row(sid(7), state="2", major_incident_state="proposed"))
    assert ticket.id == sid(7) and ticket.state == "in_progress" and ticket.major == "proposed"
    assert ticket.url == f"{BASE}/nav_to.do?uri=incident.do?sys_id={sid(7)}"


# -- delta poll ----------------------------------------------------------------------------------


def test_first_poll_asks_for_mapped_fields_in_keyset_order_from_the_overlap(
        make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    rsps.get(TABLE, **page([row(sid(1), "2024-05-01 10:00:01")]))
    platform = make()
    rows = list(platform.fetch_changed(Watermark(T0, sid(0)), T0 - timedelta(hours=4)))
    assert [r["sys_id"] for r in rows] == [sid(1)]
    params = params_of(rsps.calls[0])
    # the watermark minus the mapping's overlap (60s)
    assert params["sysparm_query"] == "sys_updated_on>=2024-05-01 09:59:00^ORDERBYsys_updated_on^ORDERBYsys_id"
    fields = params["sysparm_fields"].split(",")
    assert {"sys_id", "sys_mod_count", "sys_updated_on", "business_service", "correlation_id",
            "major_incident_state", "parent_incident", "u_mim_stage"} <= set(fields)
    assert params["sysparm_exclude_reference_link"] == "true"
    assert params["sysparm_display_value"] == "false"
    assert params["sysparm_limit"] == "500"
    assert "sysparm_offset" not in params
    kwargs = sent_kwargs(rsps.calls[0])
    assert kwargs["timeout"] == 30.0 and kwargs["verify"] is True
    assert platform.requests_sent == 1


def test_poll_without_watermark_starts_at_the_horizon_in_utc(
        make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock) -> None:
    rsps.get(TABLE, **page([]))
    berlin = timezone(timedelta(hours=2))
    list(make().fetch_changed(None, datetime(2024, 5, 1, 12, 0, 0, tzinfo=berlin)))
    assert query_of(rsps.calls[0]).startswith("sys_updated_on>=2024-05-01 10:00:00^")


def test_keyset_paging_follows_changing_data_and_deduplicates_versions(
        make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock) -> None:
    a, b, c = sid(1), sid(2), sid(3)
    q1 = "sys_updated_on>=2024-05-01 09:59:00^ORDERBYsys_updated_on^ORDERBYsys_id"
    q2 = ("sys_updated_on>2024-05-01 10:00:02^NQsys_updated_on=2024-05-01 10:00:02^sys_id>" + b
          + "^ORDERBYsys_updated_on^ORDERBYsys_id")
    q3 = ("sys_updated_on>2024-05-01 10:00:05^NQsys_updated_on=2024-05-01 10:00:05^sys_id>" + a
          + "^ORDERBYsys_updated_on^ORDERBYsys_id")
    link = f"{TABLE}?sysparm_query={q2}&sysparm_offset=2&sysparm_limit=2"
    # page 1 is full; page 2 (keyset after b) is empty because ACLs hid its rows, but Link says more exist;
    # page 3 repeats b's version (rows shifted) and brings a again, updated meanwhile (a new version).
    rsps.get(TABLE, match=[matchers.query_param_matcher({"sysparm_query": q1}, strict_match=False)],
             **page([row(a, "2024-05-01 10:00:01"), row(b, "2024-05-01 10:00:02")], total=5))
    rsps.get(TABLE, match=[matchers.query_param_matcher({"sysparm_query": q2}, strict_match=False)],
             **page([], link=link, total=3))
    rsps.get(TABLE, match=[matchers.query_param_matcher({"sysparm_query": q2, "sysparm_offset": "2"}, strict_match=False)],
             **page([row(b, "2024-05-01 10:00:02"), row(a, "2024-05-01 10:00:05", mod=1)], link=link + "x", total=3))
    rsps.get(TABLE, match=[matchers.query_param_matcher({"sysparm_query": q3}, strict_match=False)],
             **page([row(c, "2024-05-01 10:00:06")]))
    rows = list(make(page_size=2).fetch_changed(Watermark(T0, sid(0)), T0))
    assert [(r["sys_id"], r["sys_mod_count"]) for r in rows] == [(a, "0"), (b, "0"), (a, "1"), (c, "0")]


def test_an_empty_first_page_with_link_next_is_not_the_end(
        make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock) -> None:
    link = f"{TABLE}?sysparm_query=sys_updated_on%3E%3D2024-05-01+09%3A59%3A00&sysparm_offset=500&sysparm_limit=500"
    rsps.get(TABLE, **page([], link=link, total=501))
    rsps.get(TABLE, match=[matchers.query_param_matcher({"sysparm_offset": "500"}, strict_match=False)],
             **page([row(sid(9))], total=501))
    rows = list(make().fetch_changed(Watermark(T0, sid(0)), T0))
    assert [r["sys_id"] for r in rows] == [sid(9)]


def test_a_short_page_with_link_next_is_not_the_end(make: Callable[..., ServiceNowPlatform],
                                                   rsps: responses.RequestsMock) -> None:
    # ACLs removed rows from the first page after the limit was applied; more rows exist behind it.
    link = f"{TABLE}?sysparm_offset=3&sysparm_limit=3"
    rsps.get(TABLE, **page([row(sid(1), "2024-05-01 10:00:01")], link=link, total=5))
    rsps.get(TABLE, match=[matchers.query_param_matcher({"sysparm_query": (
        f"sys_updated_on>2024-05-01 10:00:01^NQsys_updated_on=2024-05-01 10:00:01^sys_id>{sid(1)}"
        "^ORDERBYsys_updated_on^ORDERBYsys_id")}, strict_match=False)],
        **page([row(sid(2), "2024-05-01 10:00:04")]))
    rows = list(make(page_size=3).fetch_changed(None, T0))
    assert [r["sys_id"] for r in rows] == [sid(1), sid(2)]


def test_a_link_to_another_host_is_followed_on_our_instance_only(
        make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock) -> None:
    rsps.get(TABLE, **page([], link="https://evil.example/api/now/table/incident?sysparm_offset=5", total=9))
    rsps.get(TABLE, match=[matchers.query_param_matcher({"sysparm_offset": "5"})], **page([]))
    list(make().fetch_changed(None, T0))
    assert str(rsps.calls[1].request.url).startswith(TABLE)
    assert "Authorization" in rsps.calls[1].request.headers


def test_a_page_loop_that_makes_no_progress_raises(
        make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock) -> None:
    # An instance that ignores the keyset condition (an unknown field is silently ignored) serves the
    # same full page forever.
    same = [row(sid(1), "2024-05-01 10:00:01"), row(sid(2), "2024-05-01 10:00:02")]
    rsps.get(TABLE, **page(same, total=2))
    rsps.get(TABLE, **page(same, total=2))
    with pytest.raises(PagingStalled, match="did not move forward"):
        list(make(page_size=2).fetch_changed(None, T0))


def test_a_link_loop_over_empty_pages_raises(make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock) -> None:
    link = f"{TABLE}?sysparm_offset=2&sysparm_limit=2"
    rsps.get(TABLE, **page([], link=link, total=9))
    rsps.get(TABLE, **page([], link=link, total=9))
    with pytest.raises(PagingStalled, match="already read"):
        list(make(page_size=2).fetch_changed(None, T0))


def test_a_lookup_query_that_does_not_move_forward_raises(make: Callable[..., ServiceNowPlatform],
                                                          rsps: responses.RequestsMock) -> None:
    tasks = [{"sys_id": sid(600), "number": "TASK0000001", "state": "1", "incident": MI},
             {"sys_id": sid(601), "number": "TASK0000002", "state": "1", "incident": MI}]
    rsps.get(f"{BASE}/api/now/table/incident_task", **page(tasks, total=4))
    rsps.get(f"{BASE}/api/now/table/incident_task", **page(tasks, total=4))
    with pytest.raises(PagingStalled, match="did not move forward") as caught:
        make(page_size=2).fetch_followups([MI], {MI: None})
    assert "GET /api/now/table/incident_task" in str(caught.value) and not caught.value.retryable


def test_quiet_poll_is_one_request_and_does_not_repeat_what_was_returned(
        make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock) -> None:
    last = row(sid(5), "2024-05-01 10:00:00")
    late = row(sid(4), "2024-05-01 10:00:00")  # same second, lower sys_id, committed after the last poll
    rsps.get(TABLE, **page([last]))
    rsps.get(TABLE, **page([last]))
    rsps.get(TABLE, **page([late, last]))
    platform = make()
    mark = Watermark(T0, sid(5))
    assert [r["sys_id"] for r in platform.fetch_changed(Watermark(T0 - timedelta(seconds=1), sid(1)), T0)] == [sid(5)]
    assert list(platform.fetch_changed(mark, T0)) == []
    assert [r["sys_id"] for r in platform.fetch_changed(mark, T0)] == [sid(4)]
    assert platform.requests_sent == 3


def test_a_new_version_of_a_returned_row_comes_again(make: Callable[..., ServiceNowPlatform],
                                                     rsps: responses.RequestsMock) -> None:
    rsps.get(TABLE, **page([row(sid(5), "2024-05-01 10:00:00")]))
    rsps.get(TABLE, **page([row(sid(5), "2024-05-01 10:00:01", mod=1)]))
    platform = make()
    list(platform.fetch_changed(None, T0))
    again = list(platform.fetch_changed(Watermark(T0, sid(5)), T0))
    assert [(r["sys_id"], r["sys_mod_count"]) for r in again] == [(sid(5), "1")]


def test_poll_filter_is_repeated_in_each_keyset_group(mapping: Mapping, make: Callable[..., ServiceNowPlatform],
                                                      rsps: responses.RequestsMock) -> None:
    rsps.get(TABLE, **page([row(sid(1), "2024-05-01 10:00:01")], total=2))
    rsps.get(TABLE, **page([]))
    platform = make(mapping=with_write(mapping, poll_filter="active=true"), page_size=1)
    list(platform.fetch_changed(None, T0))
    assert query_of(rsps.calls[1]) == ("active=true^sys_updated_on>2024-05-01 10:00:01^NQactive=true^sys_updated_on="
                                       f"2024-05-01 10:00:01^sys_id>{sid(1)}^ORDERBYsys_updated_on^ORDERBYsys_id")


def test_fetch_marked_uses_in_not_the_null_dropping_not_equal(make: Callable[..., ServiceNowPlatform],
                                                              rsps: responses.RequestsMock) -> None:
    rsps.get(TABLE, **page([row(MI, u_mim_marker="mim:service-surge", major_incident_state="proposed")]))
    rows = make().fetch_marked()
    assert [r["sys_id"] for r in rows] == [MI] and rows[0]["_marker"] == "mim:service-surge"
    assert query_of(rsps.calls[0]) == "major_incident_stateINproposed,accepted,rejected^stateNOT IN7,8^ORDERBYsys_id"


def test_fetch_marked_finds_markers_in_our_column_the_correlation_field_and_the_journal(
        make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock) -> None:
    ours, legacy, noted, theirs = sid(1), sid(2), sid(3), sid(4)
    rsps.get(TABLE, **page([row(ours, u_mim_marker="mim:service-surge", major_incident_state="accepted"),
                            row(legacy, correlation_id="mim:ci-surge", major_incident_state="proposed"),
                            row(noted, correlation_id="monitoring-123", major_incident_state="proposed"),
                            row(theirs, correlation_id="monitoring-9", major_incident_state="accepted")]))
    rsps.get(JOURNAL, **page([
        {"sys_id": sid(20), "element_id": noted, "value": "Proposed.\nMajor incident marker: [mim:p1-critical]\n[mim-x]",
         "sys_created_on": "2024-05-01 10:00:00"},
        {"sys_id": sid(21), "element_id": theirs, "value": "Call the vendor [mim-123456789012]",
         "sys_created_on": "2024-05-01 10:00:00"}]))
    platform = make()
    rows = platform.fetch_marked()
    assert [(r["sys_id"], r["_marker"]) for r in rows] == [(ours, "mim:service-surge"), (legacy, "mim:ci-surge"),
                                                           (noted, "mim:p1-critical")]
    assert query_of(rsps.calls[1]) == (f"element_idIN{noted},{theirs}^element=work_notes^valueLIKE[mim:^ORDERBYsys_id")
    assert platform.to_ticket(rows[2]).marker == "mim:p1-critical"


def test_unknown_incidents_are_read_by_sys_id_in_chunks(make: Callable[..., ServiceNowPlatform],
                                                        rsps: responses.RequestsMock) -> None:
    ids = [sid(n) for n in range(150)]
    changes = [sid(1000 + n) for n in range(150)]
    rsps.get(TABLE, **page([row(i, rfc=c) for i, c in zip(ids[:100], changes[:100])]))
    rsps.get(TABLE, **page([row(i, rfc=c) for i, c in zip(ids[100:], changes[100:])]))
    rsps.get(f"{BASE}/api/now/table/change_request", **page([]))
    rsps.get(f"{BASE}/api/now/table/change_request", **page([]))
    rsps.get(f"{BASE}/api/now/table/incident_task", **page([]))
    rsps.get(f"{BASE}/api/now/table/incident_task", **page([]))
    make().fetch_followups(ids)
    assert query_of(rsps.calls[0]) == "sys_idIN" + ",".join(ids[:100]) + "^ORDERBYsys_id"
    assert query_of(rsps.calls[1]).startswith("sys_idIN" + ids[100])
    # every row of both pages was read: each one's change is asked for
    assert query_of(rsps.calls[2]) == "sys_idIN" + ",".join(changes[:100]) + "^ORDERBYsys_id"
    assert query_of(rsps.calls[3]) == "sys_idIN" + ",".join(changes[100:]) + "^ORDERBYsys_id"


# -- escaping ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["web^ORactive=true", "x^NQsys_id!=", "line\nbreak", "cr\rhere"],
                         ids=["or", "new-query", "newline", "carriage-return"])
def test_values_that_could_change_a_query_are_rejected(value: str) -> None:
    with pytest.raises(QueryValueError, match="cannot escape"):
        query_value(value)


def test_a_comma_cannot_split_an_in_list() -> None:
    with pytest.raises(QueryValueError, match="IN list"):
        query_value("a,b", in_list=True)
    assert query_value("a,b") == "a,b"


def test_an_unsafe_id_is_rejected_before_any_request(make: Callable[..., ServiceNowPlatform],
                                                     rsps: responses.RequestsMock) -> None:
    with pytest.raises(QueryValueError):
        make().fetch_followups([sid(1), sid(2) + "^NQactive=true"])
    assert len(rsps.calls) == 0


def test_an_unsafe_marker_fails_the_action_not_the_cycle(make: Callable[..., ServiceNowPlatform],
                                                         rsps: responses.RequestsMock) -> None:
    action = CreateParent(key="create:new-1", target="new-1", mode="propose", marker="mim:r^NQactive=true")
    platform = make()
    platform.discover(facts())
    [result] = platform.apply([action], ident, frozenset({action.key}))
    assert result.status == "failed" and "cannot escape" in result.detail and not result.retryable
    assert len(rsps.calls) == 0


def test_poll_filter_with_a_new_query_group_is_refused(mapping: Mapping) -> None:
    with pytest.raises(SettingsError, match="NQ"):
        ServiceNowPlatform(BASE, "u", "p", with_write(mapping, poll_filter="active=true^NQactive=false"))


# -- the retry table -----------------------------------------------------------------------------


RETRIED = [
    pytest.param({"status": 429, "json": {"error": {"message": "Rate limit exceeded"}}, "headers": {"Retry-After": "7"}},
                 [7.0], id="429-retry-after"),
    pytest.param({"status": 503, "json": {"error": {"message": "Unavailable"}}, "headers": {"Retry-After": "3"}},
                 [3.0], id="503-retry-after"),
    pytest.param({"status": 503, "json": {"error": {"message": "Unavailable"}}}, None, id="503-backoff"),
    pytest.param({"status": 502, "body": "Bad gateway"}, None, id="502-backoff"),
    pytest.param({"status": 504, "body": ""}, None, id="504-backoff"),
    pytest.param({"status": 500, "json": {"error": {"message": "boom"}}}, None, id="500-backoff"),
    pytest.param({"status": 202, "body": ""}, None, id="202-empty-queue-overflow"),
    pytest.param({"status": 200, "body": "<html><body>Instance hibernating</body></html>",
                  "content_type": "text/html"}, None, id="html-maintenance-page"),
    pytest.param({"body": requests.exceptions.ConnectionError("reset")}, None, id="connection-error"),
    pytest.param({"body": requests.exceptions.ReadTimeout("slow")}, None, id="read-timeout"),
    pytest.param({"status": 401, "json": {"error": {"message": "User Not Authenticated"}}}, None, id="401-once"),
]


@pytest.mark.parametrize(("failure", "expected_sleeps"), RETRIED)
def test_retryable_answers_are_retried(failure: dict[str, Any], expected_sleeps: list[float] | None,
                                       make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock,
                                       sleeps: list[float]) -> None:
    rsps.get(TABLE, **failure)
    rsps.get(TABLE, **page([row(sid(1))]))
    platform = make()
    assert len(list(platform.fetch_changed(None, T0))) == 1
    assert platform.requests_sent == 2
    assert len(sleeps) == 1
    if expected_sleeps is not None:
        assert sleeps == expected_sleeps
    else:
        assert 0 < sleeps[0] <= 30.0


def failure_of(condition: Condition) -> dict[str, Any]:
    """``responses`` arguments that make the Table API answer with the condition of a retry table row."""
    if isinstance(condition, type):
        return {"body": condition("simulated")}
    if condition == RETRY_AFTER_503:
        return {"status": 503, "json": {"error": {"message": "Unavailable"}}, "headers": {"Retry-After": "0"}}
    if condition == EMPTY_202:
        return {"status": 202, "body": ""}
    if condition == UNREADABLE_2XX:
        return {"status": 200, "body": "<html>Instance hibernating</html>", "content_type": "text/html"}
    status = {OTHER_4XX: 418, OTHER_STATUS: 501}.get(condition, condition)
    return {"status": status, "json": {"error": {"message": "refused"}}}


@pytest.mark.parametrize("condition", list(SERVICENOW_TABLE), ids=lambda c: getattr(c, "__name__", str(c)))
def test_a_create_walks_every_row_of_the_retry_table(condition: Condition, make: Callable[..., ServiceNowPlatform],
                                                     rsps: responses.RequestsMock) -> None:
    row = SERVICENOW_TABLE[condition]
    rsps.post(TABLE, **failure_of(condition))
    if row.action is ResponseAction.REREAD:  # it may have landed: look for its marker before posting again
        rsps.get(TABLE, **page([]))
    if row.action is not ResponseAction.FATAL:
        rsps.post(TABLE, status=201, json={"result": {"sys_id": sid(99), "number": "INC0010099",
                                                                "major_incident_state": "proposed"}})
    platform = make()
    platform.discover(facts())
    [result] = platform.apply([CreateParent(key="c", target="new-1", mode="propose", marker="mim:r:new-1")], ident)
    assert result.status == ("failed" if row.action is ResponseAction.FATAL else "applied"), result.detail
    sent = {ResponseAction.FATAL: 1, ResponseAction.RETRY: 2, ResponseAction.RETRY_ONCE: 2, ResponseAction.REREAD: 3}
    assert platform.requests_sent == sent[row.action]


def test_backoff_grows_and_the_last_error_is_raised(make: Callable[..., ServiceNowPlatform],
                                                    rsps: responses.RequestsMock, sleeps: list[float]) -> None:
    for _ in range(6):
        rsps.get(TABLE, status=502, json={"error": {"message": "Bad gateway"}})
    platform = make()
    with pytest.raises(TransientError, match="Bad gateway"):
        list(platform.fetch_changed(None, T0))
    assert platform.requests_sent == 6 and len(sleeps) == 5
    assert sleeps[-1] > sleeps[0]


def test_401_is_retried_only_once(make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock) -> None:
    rsps.get(TABLE, status=401, json={"error": {"message": "User Not Authenticated"}})
    rsps.get(TABLE, status=401, json={"error": {"message": "User Not Authenticated"}})
    platform = make()
    with pytest.raises(AuthenticationError, match="User Not Authenticated"):
        list(platform.fetch_changed(None, T0))
    assert platform.requests_sent == 2


@pytest.mark.parametrize(("status", "error"), [(400, ClientError), (403, PermissionDenied), (404, NotFound),
                                               (405, ClientError), (409, Conflict)],
                         ids=["400", "403", "404", "405", "409"])
def test_other_client_errors_are_never_retried(status: int, error: type, make: Callable[..., ServiceNowPlatform],
                                               rsps: responses.RequestsMock, sleeps: list[float]) -> None:
    rsps.get(TABLE, status=status, json={"error": {"message": "Invalid table incidnt",
                                                   "detail": "caller Jane Roe jane@example.com"},
                                         "status": "failure", "result": [{"short_description": "Jane's laptop"}]})
    platform = make()
    with pytest.raises(error) as caught:
        list(platform.fetch_changed(None, T0))
    assert platform.requests_sent == 1 and sleeps == []
    message = str(caught.value)
    assert "Invalid table incidnt" in message and f"HTTP {status}" in message
    assert "Jane" not in message and "jane@example.com" not in message and "laptop" not in message


def test_an_error_without_message_says_so_and_keeps_the_body_out(make: Callable[..., ServiceNowPlatform],
                                                                  rsps: responses.RequestsMock) -> None:
    rsps.get(TABLE, status=400, body="caller Jane Roe, phone 555-0100")
    with pytest.raises(ClientError) as caught:
        list(make().fetch_changed(None, T0))
    assert "without an error message" in str(caught.value) and "Jane" not in str(caught.value)


def test_a_200_without_result_is_unexpected(make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock) -> None:
    for _ in range(6):
        rsps.get(TABLE, json={"records": []})
    with pytest.raises(UnexpectedResponse, match="no result"):
        list(make().fetch_changed(None, T0))


def test_cookies_are_never_kept(make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock) -> None:
    rsps.get(TABLE, headers={"Set-Cookie": "JSESSIONID=abc; Path=/", "X-Total-Count": "0"}, json={"result": []})
    rsps.get(TABLE, **page([]))
    platform = make()
    list(platform.fetch_changed(None, T0))
    list(platform.fetch_changed(None, T0))
    assert "Cookie" not in rsps.calls[1].request.headers


def test_a_ca_bundle_and_the_timeout_reach_every_request(make: Callable[..., ServiceNowPlatform],
                                                         rsps: responses.RequestsMock,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets REQUESTS_CA_BUNDLE override a session's bundle; a configured bundle must win.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    rsps.get(TABLE, **page([]))
    list(make(verify="/etc/ssl/corp-ca.pem", timeout=12.5).fetch_changed(None, T0))
    kwargs = sent_kwargs(rsps.calls[0])
    assert kwargs["verify"] == "/etc/ssl/corp-ca.pem" and kwargs["timeout"] == 12.5


# -- auth, configuration and secrets -------------------------------------------------------------


def test_basic_auth_is_sent(make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock) -> None:
    rsps.get(TABLE, **page([]))
    list(make().fetch_changed(None, T0))
    expected = "Basic " + base64.b64encode(f"mim.integration:{PASSWORD}".encode()).decode()
    assert rsps.calls[0].request.headers["Authorization"] == expected


def test_oauth_password_grant_then_refresh_after_a_401(make: Callable[..., ServiceNowPlatform],
                                                       rsps: responses.RequestsMock) -> None:
    token_url = f"{BASE}/oauth_token.do"
    rsps.post(token_url, match=[matchers.urlencoded_params_matcher(
        {"grant_type": "password", "client_id": "mim", "client_secret": CLIENT_SECRET,
         "username": "mim.integration", "password": PASSWORD})],
        json={"access_token": "tok-1", "refresh_token": "ref-1", "expires_in": 1799, "token_type": "Bearer"})
    rsps.get(TABLE, match=[matchers.header_matcher({"Authorization": "Bearer tok-1"})], status=401,
             json={"error": {"message": "User Not Authenticated"}})
    rsps.post(token_url, match=[matchers.urlencoded_params_matcher(
        {"grant_type": "refresh_token", "client_id": "mim", "client_secret": CLIENT_SECRET, "refresh_token": "ref-1"})],
        json={"access_token": "tok-2", "refresh_token": "ref-2", "expires_in": 1799})
    rsps.get(TABLE, match=[matchers.header_matcher({"Authorization": "Bearer tok-2"})], **page([]))
    platform = make(client_id="mim", client_secret=SecretStr(CLIENT_SECRET))
    list(platform.fetch_changed(None, T0))
    assert platform.requests_sent == 4


def test_a_refused_token_is_an_authentication_error_without_secrets(make: Callable[..., ServiceNowPlatform],
                                                                    rsps: responses.RequestsMock) -> None:
    for _ in range(2):
        rsps.post(f"{BASE}/oauth_token.do", status=401,
                  json={"error": "server_error", "error_description": f"bad {PASSWORD}"})
    platform = make(client_id="mim", client_secret=CLIENT_SECRET)
    with pytest.raises(AuthenticationError) as caught:
        list(platform.fetch_changed(None, T0))
    for text in (str(caught.value), repr(caught.value), repr(platform)):
        assert PASSWORD not in text and CLIENT_SECRET not in text


def test_secrets_never_appear_in_repr_or_errors(make: Callable[..., ServiceNowPlatform],
                                                rsps: responses.RequestsMock) -> None:
    rsps.get(TABLE, body=requests.exceptions.ConnectionError(f"failed for mim.integration:{PASSWORD}@host"))
    platform = make(policy=RetryPolicy(attempts=1, sleep=lambda s: None), client_id=None)
    with pytest.raises(TransientError) as caught:
        list(platform.fetch_changed(None, T0))
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(platform) and "mim.integration" in repr(platform)


@pytest.mark.parametrize("url", ["http://acme.service-now.com", f"https://u:{PASSWORD}@acme.service-now.com", "ftp://x"],
                         ids=["plain-http", "credentials-in-url", "other-scheme"])
def test_unsafe_urls_are_refused(url: str, mapping: Mapping) -> None:
    with pytest.raises(SettingsError) as caught:
        ServiceNowPlatform(url, "u", PASSWORD, mapping)
    assert PASSWORD not in str(caught.value)


def test_loopback_simulators_may_use_plain_http(mapping: Mapping) -> None:
    assert ServiceNowPlatform("http://127.0.0.1:8080", "u", "p", mapping).base_url == "http://127.0.0.1:8080"
    assert ServiceNowPlatform("acme.service-now.com", "u", "p", mapping).base_url == BASE


def test_from_settings_names_what_is_missing_and_never_the_password(mapping: Mapping) -> None:
    with pytest.raises(SettingsError) as caught:
        ServiceNowPlatform.from_settings(ServiceNowSettings(url=BASE, password=SecretStr(PASSWORD)), mapping)
    message = str(caught.value)
    assert "servicenow.username (or MIM_SERVICENOW_USERNAME)" in message and "url" not in message.split("set ")[1]
    assert PASSWORD not in message
    with pytest.raises(SettingsError, match="MIM_SERVICENOW_PASSWORD"):
        ServiceNowPlatform.from_settings(ServiceNowSettings(url=BASE, username="u"), mapping)


def test_from_settings_reads_the_password_file(mapping: Mapping, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    platform = ServiceNowPlatform.from_settings(
        ServiceNowSettings(url=BASE, username="u", password_file=str(secret), timeout=5), mapping)
    assert platform.base_url == BASE and PASSWORD not in repr(platform)


# -- discovery -----------------------------------------------------------------------------------


def test_discovery_with_a_cache_sends_nothing(make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock) -> None:
    platform = make()
    assert platform.discover(facts())["stage_field"] == "u_mim_stage"
    assert platform.requests_sent == 0


def test_discovery_looks_the_stage_field_up_in_the_dictionary(make: Callable[..., ServiceNowPlatform],
                                                              rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/api/now/table/sys_dictionary", **page([{"sys_id": sid(1), "name": "incident", "element": "u_mim_stage"}]))
    facts = make().discover(None)
    assert facts["stage_field"] == "u_mim_stage"
    assert json.loads(json.dumps(facts)) == facts
    assert query_of(rsps.calls[0]) == "nameINincident,task^elementINu_mim_stage,u_mim_marker^ORDERBYsys_id"
    assert facts["marker_field"] is None


def test_discovery_falls_back_to_an_incident_when_the_dictionary_is_forbidden(
        make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/api/now/table/sys_dictionary", status=403, json={"error": {"message": "ACL"}})
    rsps.get(TABLE, **page([{"sys_id": sid(1)}]))
    assert make().discover(None)["stage_field"] is None


# -- writes --------------------------------------------------------------------------------------


def known(platform: ServiceNowPlatform, rsps: responses.RequestsMock, *rows: dict[str, Any]) -> None:
    """Let the adapter see ``rows`` the way a cycle does: through the delta poll."""
    rsps.get(TABLE, **page(list(rows)))
    list(platform.fetch_changed(None, T0))


def test_declare_links_note_and_stage_are_one_patch_for_the_incident_and_one_batch(
        make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock) -> None:
    group = sid(77)
    rsps.get(f"{BASE}/api/now/table/sys_user_group", match=[matchers.query_param_matcher(
        {"sysparm_query": "name=major-incident-team"}, strict_match=False)],
        **page([{"sys_id": group, "name": "major-incident-team"}]))
    rsps.post(BATCH, json=batch_answer(["1", "2", "3"], results={"1": {"major_incident_state": "proposed"}}))
    platform = make(clock=lambda: T0)
    cached = platform.discover(facts())
    actions = [
        DeclareMajor(key="declare:mi", target=MI, rule="service-surge", mode="propose", marker="mim:service-surge",
                     fields={"priority": 1, "assignment_group": "major-incident-team"},
                     reason="rule service-surge: 6 tickets on service=web-shop"),
        LinkChild(key="link:1", target=CHILDREN[0], parent=MI),
        LinkChild(key="link:2", target=CHILDREN[1], parent=MI),
        AddNote(key="note:mi:declared", target=MI, text="Major incident proposed by rule service-surge."),
        SetStage(key="stage:mi", target=MI, stage="identification"),
        SetFields(key="fields:mi", target=MI, fields={"urgency": 1}),
        Notify(key="notify:mi", target=MI, channel="chat", url="https://hooks.example/x"),
    ]
    results = platform.apply(actions, ident)
    assert [r.status for r in results] == ["applied"] * 6 + ["skipped"]
    items = batch_items(rsps.calls[1])
    assert [i["method"] for i in items] == ["PATCH"] * 3
    assert items[0]["url"].startswith(f"/api/now/table/incident/{MI}?")
    tag = marker_tag("note:mi:declared")
    # proposed as the "Propose major incident" action does: state, who, when, business impact, and a note
    # with the reason and the impact; the major incident state is read back from the answer
    assert "major_incident_state" in items[0]["url"]
    assert items[0]["decoded"] == {
        # priority 1 also as impact 1 x urgency 1: priority lookup rules would overwrite priority alone
        "major_incident_state": "proposed", "u_mim_marker": "mim:service-surge", "priority": "1", "impact": "1",
        "proposed_by": ME, "proposed_on": "2024-05-01 10:00:00", "business_impact": "6 tickets on service=web-shop",
        "assignment_group": group, "u_mim_stage": "identification", "urgency": "1",
        "work_notes": f"Proposed as a major incident by the major incident connector (rule service-surge).\n"
                      f"Reason: rule service-surge: 6 tickets on service=web-shop.\n"
                      f"Business impact: 6 tickets on service=web-shop.\n[{marker_tag('declare:mi')}]\n\n"
                      f"Major incident proposed by rule service-surge.\n[{tag}]"}
    assert items[1]["decoded"] == {"parent_incident": MI} and items[1]["url"].startswith(f"/api/now/table/incident/{CHILDREN[0]}")
    assert platform.requests_sent == 2
    assert cached["groups"] == {"major-incident-team": group}


def test_names_are_looked_up_once_and_an_unknown_one_is_never_written(make: Callable[..., ServiceNowPlatform],
                                                                      rsps: responses.RequestsMock) -> None:
    jane = sid(56)
    rsps.get(f"{BASE}/api/now/table/sys_user", match=[matchers.query_param_matcher(
        {"sysparm_query": "user_name=oncall.duty"}, strict_match=False)], **page([]))
    # an instance that dropped the query term (an ACL-hidden column) answers with someone else: not adopted
    rsps.get(f"{BASE}/api/now/table/sys_user", **page([{"sys_id": sid(57), "user_name": "someone.else"}]))
    rsps.get(f"{BASE}/api/now/table/sys_user", **page([{"sys_id": jane, "user_name": "jane.doe"}]))
    rsps.patch(f"{TABLE}/{MI}", match=[matchers.json_params_matcher({"assigned_to": jane})], json={"result": {"sys_id": MI}})
    rsps.patch(f"{TABLE}/{MI}", match=[matchers.json_params_matcher({"assigned_to": jane, "priority": "2", "impact": "1",
                                                                     "urgency": "2"})], json={"result": {"sys_id": MI}})
    platform = make()
    cached = platform.discover(facts())
    [unknown] = platform.apply([SetFields(key="f0", target=MI, fields={"assignee": "oncall.duty"})], ident)
    assert unknown.status == "failed" and unknown.retryable
    assert "no sys_user with user_name 'oncall.duty'" in unknown.detail
    [hidden] = platform.apply([SetFields(key="f1", target=MI, fields={"assignee": "jane.doe"})], ident)
    assert hidden.status == "failed"
    platform.apply([SetFields(key="f2", target=MI, fields={"assignee": "jane.doe"})], ident)
    platform.apply([SetFields(key="f3", target=MI, fields={"assignee": "jane.doe", "priority": 2})], ident)
    assert cached["users"] == {"mim.integration": ME, "jane.doe": jane}
    assert platform.requests_sent == 5


def test_accept_mode_writes_accepted(make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock) -> None:
    note = f"Declared a major incident (accepted) by the major incident connector.\n[{marker_tag('d')}]"
    rsps.patch(f"{TABLE}/{MI}", match=[matchers.json_params_matcher(
        {"major_incident_state": "accepted", "u_mim_marker": "mim:p1-critical", "work_notes": note}),
        matchers.query_param_matcher({"sysparm_fields": "sys_id,major_incident_state"}, strict_match=False)],
        json={"result": {"sys_id": MI, "major_incident_state": "accepted"}})
    platform = make()
    platform.discover(facts())
    [result] = platform.apply([DeclareMajor(key="d", target=MI, mode="accept", marker="mim:p1-critical")], ident)
    assert result.status == "applied"


@pytest.mark.parametrize("answer", [{"sys_id": MI, "major_incident_state": ""}, {"sys_id": MI}],
                         ids=["old-value-kept", "column-hidden"])
def test_an_accept_the_instance_did_not_keep_is_a_failure(answer: dict[str, str],
                                                           make: Callable[..., ServiceNowPlatform],
                                                           rsps: responses.RequestsMock) -> None:
    # a field ACL answers 200 and keeps the old value (reference §6): read back, never assumed
    rsps.patch(f"{TABLE}/{MI}", json={"result": answer})
    platform = make()
    platform.discover(facts())
    [result] = platform.apply([DeclareMajor(key="d", target=MI, mode="accept", marker="mim:p1-critical")], ident)
    assert result.status == "failed" and result.retryable
    assert "major_incident_state" in result.detail and f"PATCH /api/now/table/incident/{MI}" in result.detail


def test_what_is_already_true_is_not_written(make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock) -> None:
    platform = make()
    platform.discover(facts())
    known(platform, rsps, row(MI, major_incident_state="proposed", u_mim_marker="mim:service-surge", u_mim_stage="identification"),
          row(CHILDREN[0], parent_incident=MI))
    results = platform.apply([
        DeclareMajor(key="d", target=MI, mode="propose", marker="mim:service-surge"),
        LinkChild(key="l", target=CHILDREN[0], parent=MI),
        SetStage(key="s", target=MI, stage="identification"),
    ], ident)
    assert [r.status for r in results] == ["skipped"] * 3
    assert platform.requests_sent == 1


def test_an_accepted_incident_is_not_downgraded_and_a_rejected_one_not_proposed_again(
        make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock) -> None:
    platform = make()
    platform.discover(facts())
    known(platform, rsps, row(MI, major_incident_state="accepted"), row(CHILDREN[0], major_incident_state="rejected"))
    rsps.get(TABLE, **page([row(MI, major_incident_state="accepted")]))  # read again right before the write
    rsps.patch(f"{TABLE}/{MI}", match=[matchers.json_params_matcher({"u_mim_marker": "mim:r"})],
               json={"result": {"sys_id": MI}})
    first, second = platform.apply([DeclareMajor(key="d1", target=MI, mode="propose", marker="mim:r"),
                                    DeclareMajor(key="d2", target=CHILDREN[0], mode="propose", marker="mim:r")], ident)
    assert first.status == "applied"
    assert second.status == "skipped" and "rejected" in second.detail


def test_an_uncertain_declaration_reads_the_record_first(make: Callable[..., ServiceNowPlatform],
                                                         rsps: responses.RequestsMock) -> None:
    rsps.get(f"{TABLE}/{MI}", json={"result": row(MI, major_incident_state="proposed", u_mim_marker="mim:r")})
    platform = make()
    platform.discover(facts())
    [result] = platform.apply([DeclareMajor(key="d", target=MI, mode="propose", marker="mim:r")], ident, frozenset({"d"}))
    assert result.status == "skipped" and platform.requests_sent == 1


def test_create_parent_posts_a_marked_incident_and_children_link_to_it(
        make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock) -> None:
    new = sid(99)
    rsps.post(TABLE, status=201, json={"result": {"sys_id": new, "number": "INC0010099",
                                                  "major_incident_state": "proposed"}})
    rsps.patch(f"{TABLE}/{CHILDREN[0]}", match=[matchers.json_params_matcher({"parent_incident": new})],
               json={"result": {"sys_id": CHILDREN[0]}})
    platform = make(clock=lambda: T0)
    platform.discover(facts())
    create = CreateParent(key="create:new-1", target="new-1", rule="r", mode="propose", marker="mim:r:new-1",
                          fields={"title": "Major incident: service=web", "service": "b" * 32, "priority": 1},
                          reason="rule r: 5 tickets on service=web")
    results = platform.apply([create, LinkChild(key="l", target=CHILDREN[0], parent="new-1")], lambda t: None)
    assert results[0].status == "applied" and results[0].created_id == new and results[0].created_key == "INC0010099"
    assert results[1].status == "applied"
    assert body_of(rsps.calls[0]) == {"short_description": "Major incident: service=web", "business_service": "b" * 32,
                                      "priority": "1", "impact": "1", "urgency": "1", "major_incident_state": "proposed",
                                      "proposed_by": ME, "proposed_on": "2024-05-01 10:00:00",
                                      "business_impact": "5 tickets on service=web",
                                      "correlation_id": "mim:r:new-1", "u_mim_marker": "mim:r:new-1",
                                      "work_notes": "Proposed as a major incident by the major incident connector "
                                                    "(rule r).\nReason: rule r: 5 tickets on service=web.\n"
                                                    "Business impact: 5 tickets on service=web."}
    assert params_of(rsps.calls[0])["sysparm_fields"] == "sys_id,number,major_incident_state"


def test_a_new_parent_created_without_its_major_incident_state_is_reported(make: Callable[..., ServiceNowPlatform],
                                                                          rsps: responses.RequestsMock) -> None:
    new = sid(99)
    rsps.post(TABLE, status=201, json={"result": {"sys_id": new, "number": "INC0010099", "major_incident_state": ""}})
    rsps.patch(f"{TABLE}/{CHILDREN[0]}", json={"result": {"sys_id": CHILDREN[0]}})
    platform = make()
    platform.discover(facts())
    create = CreateParent(key="create:new-1", target="new-1", rule="r", mode="accept", marker="mim:r:new-1")
    results = platform.apply([create, LinkChild(key="l", target=CHILDREN[0], parent="new-1")], lambda t: None)
    assert results[0].status == "failed" and results[0].created_id == new, "created: never created twice"
    assert "major_incident_manager" in results[0].detail
    assert results[1].status == "applied", "its children are still linked to it"


def test_an_uncertain_create_finds_the_parent_by_its_marker(make: Callable[..., ServiceNowPlatform],
                                                            rsps: responses.RequestsMock) -> None:
    rsps.get(TABLE, match=[matchers.query_param_matcher({"sysparm_query": "correlation_id=mim:r:new-1^ORDERBYsys_created_on"},
                                                        strict_match=False)],
             **page([{"sys_id": sid(99), "number": "INC0010099", "correlation_id": "mim:r:new-1",
                     "major_incident_state": "proposed"}]))
    platform = make()
    platform.discover(facts())
    create = CreateParent(key="create:new-1", target="new-1", mode="propose", marker="mim:r:new-1")
    [result] = platform.apply([create], ident, frozenset({create.key}))
    assert result.status == "skipped" and result.created_id == sid(99)


def test_a_look_up_answered_with_a_record_without_the_marker_creates(make: Callable[..., ServiceNowPlatform],
                                                                    rsps: responses.RequestsMock) -> None:
    # the instance dropped the marker term (a hidden or unknown column) and answered with any incident
    rsps.get(TABLE, **page([{"sys_id": sid(5), "number": "INC0010005", "correlation_id": "monitoring-123"}]))
    rsps.post(TABLE, status=201, json={"result": {"sys_id": sid(99), "number": "INC0010099",
                                                                "major_incident_state": "proposed"}})
    platform = make()
    platform.discover(facts())
    create = CreateParent(key="create:new-1", target="new-1", mode="propose", marker="mim:r:new-1")
    [result] = platform.apply([create], ident, frozenset({create.key}))
    assert result.status == "applied" and result.created_id == sid(99)
    assert "correlation_id" in params_of(rsps.calls[0])["sysparm_fields"].split(",")


def test_an_uncertain_create_that_finds_nothing_creates(make: Callable[..., ServiceNowPlatform],
                                                        rsps: responses.RequestsMock) -> None:
    rsps.get(TABLE, **page([]))
    rsps.post(TABLE, status=201, json={"result": {"sys_id": sid(99), "number": "INC0010099",
                                                                "major_incident_state": "proposed"}})
    platform = make()
    platform.discover(facts())
    create = CreateParent(key="create:new-1", target="new-1", mode="propose", marker="mim:r:new-1")
    [result] = platform.apply([create], ident, frozenset({create.key}))
    assert result.status == "applied" and result.created_id == sid(99)


def test_a_lost_create_answer_is_looked_up_before_posting_again(make: Callable[..., ServiceNowPlatform],
                                                                rsps: responses.RequestsMock) -> None:
    rsps.post(TABLE, status=502, body="")
    rsps.get(TABLE, **page([{"sys_id": sid(99), "number": "INC0010099", "correlation_id": "mim:r:new-1",
                     "major_incident_state": "proposed"}]))
    platform = make()
    platform.discover(facts())
    [result] = platform.apply([CreateParent(key="c", target="new-1", mode="propose", marker="mim:r:new-1")], ident)
    assert result.status == "applied" and result.created_id == sid(99)
    assert platform.requests_sent == 2


def test_links_to_a_parent_whose_creation_failed_fail_too(make: Callable[..., ServiceNowPlatform],
                                                          rsps: responses.RequestsMock) -> None:
    rsps.post(TABLE, status=403, json={"error": {"message": "Operation against file 'incident' was aborted by Business Rule"}})
    rsps.patch(f"{TABLE}/{CHILDREN[1]}", json={"result": {}})
    platform = make()
    platform.discover(facts())
    results = platform.apply([
        CreateParent(key="c", target="new-1", mode="propose", marker="mim:r:new-1"),
        LinkChild(key="l1", target=CHILDREN[0], parent="new-1"),
        AddNote(key="n", target=CHILDREN[1], text="unrelated"),
    ], lambda t: None)
    assert [r.status for r in results] == ["failed", "failed", "applied"]
    assert "Business Rule" in results[0].detail and not results[0].retryable
    assert "new-1" in results[1].detail


def test_many_links_go_through_the_batch_api_in_chunks(make: Callable[..., ServiceNowPlatform],
                                                       rsps: responses.RequestsMock, mapping: Mapping) -> None:
    rsps.post(BATCH, json=batch_answer(["1", "2"]))
    rsps.post(BATCH, json=batch_answer(["1", "2"]))
    rsps.post(BATCH, json=batch_answer(["1"]))
    platform = make(mapping=with_write(mapping, batch_size=2))
    platform.discover(facts())
    results = platform.apply([LinkChild(key=f"l{i}", target=c, parent=MI) for i, c in enumerate(CHILDREN)], ident)
    assert [r.status for r in results] == ["applied"] * 5
    assert [len(batch_items(c)) for c in rsps.calls] == [2, 2, 1]
    assert platform.requests_sent == 3


def test_unserviced_batch_items_are_sent_again(make: Callable[..., ServiceNowPlatform],
                                               rsps: responses.RequestsMock) -> None:
    rsps.post(BATCH, json=batch_answer(["1", "2"], unserviced=["3"]))
    rsps.post(BATCH, json=batch_answer(["1"]))
    platform = make()
    platform.discover(facts())
    results = platform.apply([LinkChild(key=f"l{i}", target=c, parent=MI) for i, c in enumerate(CHILDREN[:3])], ident)
    assert [r.status for r in results] == ["applied"] * 3
    [again] = batch_items(rsps.calls[1])
    assert again["url"].startswith(f"/api/now/table/incident/{CHILDREN[2]}")


def test_a_rate_limited_batch_item_is_sent_again(make: Callable[..., ServiceNowPlatform],
                                                rsps: responses.RequestsMock) -> None:
    rsps.post(BATCH, json=batch_answer(["1", "2"], errors={"1": (429, "Rate limit exceeded")}))
    rsps.post(BATCH, json=batch_answer(["1"]))
    platform = make()
    platform.discover(facts())
    results = platform.apply([LinkChild(key=f"l{i}", target=c, parent=MI) for i, c in enumerate(CHILDREN[:2])], ident)
    assert [r.status for r in results] == ["applied", "applied"]
    [again] = batch_items(rsps.calls[1])
    assert again["url"].startswith(f"/api/now/table/incident/{CHILDREN[0]}")


def test_items_unserviced_three_times_fall_back_to_single_patches(make: Callable[..., ServiceNowPlatform],
                                                                  rsps: responses.RequestsMock) -> None:
    rsps.post(BATCH, json=batch_answer(["1"], unserviced=["2"]))
    rsps.post(BATCH, json=batch_answer([], unserviced=["1"]))
    rsps.post(BATCH, json=batch_answer([], unserviced=["1"]))
    rsps.patch(f"{TABLE}/{CHILDREN[1]}", json={"result": {}})
    platform = make()
    platform.discover(facts())
    results = platform.apply([LinkChild(key=f"l{i}", target=c, parent=MI) for i, c in enumerate(CHILDREN[:2])], ident)
    assert [r.status for r in results] == ["applied", "applied"]


def test_a_failed_batch_item_fails_only_its_action(make: Callable[..., ServiceNowPlatform],
                                                   rsps: responses.RequestsMock) -> None:
    rsps.post(BATCH, json=batch_answer(["1", "2"], errors={"2": (403, "ACL restricts the update")}))
    platform = make()
    platform.discover(facts())
    results = platform.apply([LinkChild(key=f"l{i}", target=c, parent=MI) for i, c in enumerate(CHILDREN[:2])], ident)
    assert results[0].status == "applied"
    assert results[1].status == "failed" and "ACL restricts the update" in results[1].detail
    assert "secret detail" not in results[1].detail and not results[1].retryable


@pytest.mark.parametrize("status", [400, 403, 404])
def test_without_the_batch_api_each_child_gets_its_own_patch(status: int, make: Callable[..., ServiceNowPlatform],
                                                             rsps: responses.RequestsMock, sleeps: list[float]) -> None:
    rsps.post(BATCH, status=status, json={"error": {"message": "Requested URI does not represent any resource"}})
    for child in CHILDREN[:3]:
        rsps.patch(f"{TABLE}/{child}", match=[matchers.json_params_matcher({"parent_incident": MI})], json={"result": {}})
    rsps.patch(f"{TABLE}/{CHILDREN[3]}", json={"result": {}})
    rsps.patch(f"{TABLE}/{CHILDREN[4]}", json={"result": {}})
    platform = make()
    cached = platform.discover(facts())
    results = platform.apply([LinkChild(key=f"l{i}", target=c, parent=MI) for i, c in enumerate(CHILDREN[:3])], ident)
    assert [r.status for r in results] == ["applied"] * 3 and sleeps == []
    assert cached["batch_api"] is False
    platform.apply([LinkChild(key=f"m{i}", target=c, parent=MI) for i, c in enumerate(CHILDREN[3:])], ident)
    assert platform.requests_sent == 6


def test_batch_can_be_switched_off(make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock) -> None:
    for child in CHILDREN[:2]:
        rsps.patch(f"{TABLE}/{child}", json={"result": {}})
    platform = make(batch=False)
    platform.discover(facts())
    platform.apply([LinkChild(key=f"l{i}", target=c, parent=MI) for i, c in enumerate(CHILDREN[:2])], ident)
    assert platform.requests_sent == 2


def test_a_batch_that_keeps_failing_fails_its_actions_as_retryable(make: Callable[..., ServiceNowPlatform],
                                                                   rsps: responses.RequestsMock) -> None:
    for _ in range(6):
        rsps.post(BATCH, status=429, headers={"Retry-After": "1"}, json={"error": {"message": "Rate limit exceeded"}})
    platform = make()
    platform.discover(facts())
    results = platform.apply([LinkChild(key=f"l{i}", target=c, parent=MI) for i, c in enumerate(CHILDREN[:2])], ident)
    assert all(r.status == "failed" and r.retryable and "Rate limit exceeded" in r.detail for r in results)


@pytest.mark.parametrize(("internal", "element"), [(True, "work_notes"), (False, "comments")], ids=["internal", "public"])
def test_a_note_carries_its_marker_tag(internal: bool, element: str, make: Callable[..., ServiceNowPlatform],
                                       rsps: responses.RequestsMock) -> None:
    rsps.patch(f"{TABLE}/{MI}", json={"result": {}})
    platform = make()
    platform.discover(facts())
    platform.apply([AddNote(key="note:1", target=MI, text="Update: stage containment", internal=internal)], ident)
    assert body_of(rsps.calls[0]) == {element: f"Update: stage containment\n[{marker_tag('note:1')}]"}


def test_uncertain_notes_are_checked_in_the_journal_with_one_query(make: Callable[..., ServiceNowPlatform],
                                                                   rsps: responses.RequestsMock) -> None:
    landed, missing = marker_tag("note:mi"), marker_tag("note:child")
    rsps.get(JOURNAL, match=[matchers.query_param_matcher(
        {"sysparm_query": f"element_idIN{MI},{CHILDREN[0]}^valueLIKEmim-^ORDERBYsys_id"}, strict_match=False)],
        **page([{"sys_id": sid(1), "element_id": MI, "value": f"Declared\n[{landed}]"},
                {"sys_id": sid(2), "element_id": MI, "value": f"Another note\n[{missing}]"}]))
    rsps.patch(f"{TABLE}/{CHILDREN[0]}", match=[matchers.json_params_matcher(
        {"work_notes": f"Routed out of hours\n[{missing}]"})], json={"result": {}})
    platform = make()
    platform.discover(facts())
    results = platform.apply([AddNote(key="note:mi", target=MI, text="Declared"),
                              AddNote(key="note:child", target=CHILDREN[0], text="Routed out of hours")],
                             ident, frozenset({"note:mi", "note:child"}))
    assert [r.status for r in results] == ["skipped", "applied"]
    assert results[0].detail == "note already on the record"
    assert platform.requests_sent == 2


def test_an_uncertain_note_not_in_the_journal_is_written(make: Callable[..., ServiceNowPlatform],
                                                         rsps: responses.RequestsMock) -> None:
    rsps.get(JOURNAL, **page([]))
    rsps.patch(f"{TABLE}/{MI}", json={"result": {}})
    platform = make()
    platform.discover(facts())
    [result] = platform.apply([AddNote(key="note:1", target=MI, text="hello")], ident, frozenset({"note:1"}))
    assert result.status == "applied"


def test_a_found_note_does_not_hide_the_fields_riding_with_it(make: Callable[..., ServiceNowPlatform],
                                                              rsps: responses.RequestsMock) -> None:
    rsps.get(JOURNAL, **page([{"sys_id": sid(1), "element_id": MI, "value": f"x\n[{marker_tag('note:1')}]"}]))
    rsps.patch(f"{TABLE}/{MI}", match=[matchers.json_params_matcher({"u_mim_stage": "containment"})], json={"result": {}})
    platform = make()
    platform.discover(facts())
    results = platform.apply([AddNote(key="note:1", target=MI, text="x"),
                              SetStage(key="stage:1", target=MI, stage="containment")], ident, frozenset({"note:1", "stage:1"}))
    assert [r.status for r in results] == ["skipped", "applied"]


def test_a_lost_patch_answer_does_not_write_the_note_twice(make: Callable[..., ServiceNowPlatform],
                                                           rsps: responses.RequestsMock) -> None:
    rsps.patch(f"{TABLE}/{MI}", status=504, body="")
    rsps.get(JOURNAL, **page([{"element_id": MI, "value": f"hello\n[{marker_tag('note:1')}]", "sys_id": sid(3)}]))
    rsps.patch(f"{TABLE}/{MI}", match=[matchers.json_params_matcher({"urgency": "1"})], json={"result": {}})
    platform = make()
    platform.discover(facts())
    results = platform.apply([AddNote(key="note:1", target=MI, text="hello"),
                              SetFields(key="f", target=MI, fields={"urgency": 1})], ident)
    assert [r.status for r in results] == ["applied", "applied"]


def test_without_the_stage_field_the_stage_is_a_work_note(make: Callable[..., ServiceNowPlatform],
                                                          rsps: responses.RequestsMock) -> None:
    rsps.patch(f"{TABLE}/{MI}", json={"result": {}})
    platform = make()
    platform.discover(facts(stage_field=None))
    platform.apply([SetStage(key="stage:1", target=MI, stage="containment")], ident)
    assert body_of(rsps.calls[0]) == {"work_notes": f"Major incident stage: containment\n[{marker_tag('stage:1')}]"}


def test_resolving_sets_the_close_code_and_notes(make: Callable[..., ServiceNowPlatform],
                                                 rsps: responses.RequestsMock) -> None:
    rsps.get(TABLE, **page([row(MI)]))  # still open right before the write
    rsps.patch(f"{TABLE}/{MI}", json={"result": {}})
    platform = make()
    platform.discover(facts())
    platform.apply([SetFields(key="f", target=MI, fields={"state": "resolved"})], ident)
    body = body_of(rsps.calls[1])
    assert body["state"] == "6" and body["close_code"] == "Solution provided" and body["close_notes"]


def test_create_task_posts_an_incident_task_with_owner_and_due_date(make: Callable[..., ServiceNowPlatform],
                                                                    rsps: responses.RequestsMock) -> None:
    user = sid(55)
    rsps.get(f"{BASE}/api/now/table/sys_user", match=[matchers.query_param_matcher(
        {"sysparm_query": "user_name=alice.martin"}, strict_match=False)],
        **page([{"sys_id": user, "user_name": "alice.martin"}]))
    rsps.post(f"{BASE}/api/now/table/incident_task", status=201, json={"result": {"sys_id": sid(60), "number": "TASK0010001"}})
    platform = make()
    platform.discover(facts())
    action = CreateTask(key="task:mi:pir", target=MI, title="Post-incident review meeting", description="Within 3 days",
                        owner="alice.martin", due=datetime(2024, 5, 4, 12, 0, tzinfo=timezone(timedelta(hours=2))))
    [result] = platform.apply([action], ident)
    assert result.status == "applied" and result.created_id == sid(60) and result.created_key == "TASK0010001"
    assert body_of(rsps.calls[1]) == {"incident": MI, "short_description": "Post-incident review meeting",
                                      "description": "Within 3 days", "assigned_to": user,
                                      "due_date": "2024-05-04 10:00:00", "correlation_id": marker_tag("task:mi:pir")}


def test_an_uncertain_task_that_exists_is_not_created_again(make: Callable[..., ServiceNowPlatform],
                                                            rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/api/now/table/incident_task", match=[matchers.query_param_matcher(
        {"sysparm_query": f"correlation_id={marker_tag('task:1')}^ORDERBYsys_created_on"}, strict_match=False)],
        **page([{"sys_id": sid(60), "number": "TASK0010001", "correlation_id": marker_tag("task:1")}]))
    platform = make()
    platform.discover(facts())
    [result] = platform.apply([CreateTask(key="task:1", target=MI, title="x")], ident, frozenset({"task:1"}))
    assert result.status == "skipped" and result.created_id == sid(60)


def test_create_change_posts_the_change_and_links_it_through_rfc(make: Callable[..., ServiceNowPlatform],
                                                                 rsps: responses.RequestsMock) -> None:
    group = sid(77)
    rsps.get(f"{BASE}/api/now/table/sys_user_group", **page([{"sys_id": group, "name": "major-incident-team"}]))
    rsps.post(f"{BASE}/api/now/table/change_request", status=201, json={"result": {"sys_id": sid(70), "number": "CHG0010001"}})
    rsps.patch(f"{TABLE}/{MI}", match=[matchers.json_params_matcher({"rfc": sid(70), "u_mim_stage": "resolution"})],
               json={"result": {}})
    platform = make()
    platform.discover(facts())
    results = platform.apply([CreateChange(key="change:mi", target=MI, title="Resolution plan", description="Roll back",
                                           group="major-incident-team"),
                              SetStage(key="stage:mi:resolution", target=MI, stage="resolution")], ident)
    assert results[0].status == "applied" and results[0].created_id == sid(70) and results[0].created_key == "CHG0010001"
    assert body_of(rsps.calls[1]) == {"short_description": "Resolution plan", "description": "Roll back", "type": "normal",
                                      "correlation_id": marker_tag("change:mi"), "assignment_group": group}


def test_an_uncertain_change_that_exists_is_only_linked(make: Callable[..., ServiceNowPlatform],
                                                        rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/api/now/table/change_request", **page([{"sys_id": sid(70), "number": "CHG0010001",
                                                                              "correlation_id": marker_tag("change:mi")}]))
    rsps.get(f"{TABLE}/{MI}", json={"result": row(MI)})
    rsps.patch(f"{TABLE}/{MI}", match=[matchers.json_params_matcher({"rfc": sid(70)})], json={"result": {}})
    platform = make()
    platform.discover(facts())
    [result] = platform.apply([CreateChange(key="change:mi", target=MI, title="Plan")], ident, frozenset({"change:mi"}))
    assert result.status == "applied" and result.created_id == sid(70)


def test_resolve_child_resolves_an_open_child_with_the_parents_notes(make: Callable[..., ServiceNowPlatform],
                                                                     rsps: responses.RequestsMock) -> None:
    rsps.get(TABLE, match=[matchers.query_param_matcher({"sysparm_query": f"sys_idIN{CHILDREN[0]}^ORDERBYsys_id"},
                                                        strict_match=False)], **page([row(CHILDREN[0])]))
    rsps.patch(f"{TABLE}/{CHILDREN[0]}", match=[matchers.json_params_matcher(
        {"state": "6", "close_code": "Solution provided", "close_notes": "Rolled back release 42"})], json={"result": {}})
    platform = make()
    platform.discover(facts())
    [result] = platform.apply([ResolveChild(key="r", target=CHILDREN[0], parent=MI, notes="Rolled back release 42")], ident)
    assert result.status == "applied"


def test_a_child_resolved_by_the_parent_to_child_sync_since_the_poll_is_left_as_it_is(
        make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock) -> None:
    # reference §1.6: a resolved parent resolves its children and copies its resolution code and notes
    rsps.get(TABLE, **page([row(CHILDREN[0], state="6", mod=1, sys_updated_by="system")]))
    platform = make()
    platform.discover(facts())
    [result] = platform.apply([ResolveChild(key="r", target=CHILDREN[0], parent=MI, notes="Rolled back")], ident)
    assert result.status == "skipped" and "already resolved" in result.detail and "parent-to-child" in result.detail
    assert platform.requests_sent == 1


def test_a_field_a_person_changed_since_the_poll_is_not_written_and_the_rest_is(
        make: Callable[..., ServiceNowPlatform], rsps: responses.RequestsMock) -> None:
    jane_group, team = sid(80), sid(81)
    platform = make()
    platform.discover(facts(groups={"major-incident-team": team}))
    known(platform, rsps, row(MI, assignment_group="", u_mim_stage="identification"), row(CHILDREN[0]))
    rsps.get(TABLE, match=[matchers.query_param_matcher({"sysparm_query": f"sys_idIN{MI},{CHILDREN[0]}^ORDERBYsys_id"},
                                                        strict_match=False)],
             **page([row(MI, mod=1, assignment_group=jane_group, u_mim_stage="identification", sys_updated_by="jane"),
                     row(CHILDREN[0], mod=2, sys_updated_by="bob", short_description="edited")]))
    rsps.post(BATCH, json=batch_answer(["1", "2"]))
    results = platform.apply([
        SetFields(key="assign", target=MI, fields={"assignment_group": "major-incident-team"}),
        SetStage(key="stage", target=MI, stage="containment"),
        SetStage(key="stage-child", target=CHILDREN[0], stage="containment"),
    ], ident)
    assert [r.status for r in results] == ["skipped", "applied", "applied"]
    assert "assignment_group changed by jane since it was read" in results[0].detail
    items = batch_items(rsps.calls[-1])
    assert [i["decoded"] for i in items] == [{"u_mim_stage": "containment"}, {"u_mim_stage": "containment"}]
    fields = params_of(rsps.calls[1])["sysparm_fields"].split(",")
    assert {"sys_mod_count", "assignment_group", "u_mim_stage"} <= set(fields)


def test_an_uncertain_resolve_reads_the_child_and_skips_a_resolved_one(make: Callable[..., ServiceNowPlatform],
                                                                       rsps: responses.RequestsMock) -> None:
    rsps.get(f"{TABLE}/{CHILDREN[0]}", json={"result": row(CHILDREN[0], state="6")})
    platform = make()
    platform.discover(facts())
    [result] = platform.apply([ResolveChild(key="r", target=CHILDREN[0], parent=MI)], ident, frozenset({"r"}))
    assert result.status == "skipped" and "resolved" in result.detail


def test_a_field_the_mapping_does_not_know_fails_clearly(make: Callable[..., ServiceNowPlatform],
                                                         rsps: responses.RequestsMock) -> None:
    platform = make()
    platform.discover(facts())
    [result] = platform.apply([SetFields(key="f", target=MI, fields={"url": "x"})], ident)
    assert result.status == "failed" and "'url'" in result.detail and not result.retryable


# -- doctor and boundaries -----------------------------------------------------------------------


def test_doctor_reports_missing_fields_and_unreadable_tables(make: Callable[..., ServiceNowPlatform],
                                                             rsps: responses.RequestsMock) -> None:
    platform = make()
    wanted = [f for f in platform.mapping.platform_fields() if not f.startswith("sys_")]
    rsps.get(f"{BASE}/api/now/table/sys_dictionary",
             **page([{"element": f, "sys_id": sid(i)} for i, f in enumerate(wanted) if f != "major_incident_state"]))
    rsps.get(f"{BASE}/api/now/table/sys_choice", **page([
        {"sys_id": sid(90), "element": "close_code", "value": "Solved (Permanently)"},
        {"sys_id": sid(91), "element": "state", "value": "6"}]))
    rsps.get(TABLE, **page([]))
    rsps.get(JOURNAL, status=403, json={"error": {"message": "Insufficient rights to query records"}})
    for table in ("incident_task", "change_request", "sys_user_group", "sys_user"):
        rsps.get(f"{BASE}/api/now/table/{table}", **page([]))
    rsps.post(BATCH, json=batch_answer(["1"]))
    checks = {name: (ok, detail, fix) for name, ok, detail, fix in platform.doctor_checks(facts(stage_field=None))}
    assert checks["mapped incident fields"][0] is False and "major_incident_state" in checks["mapped incident fields"][1]
    assert checks["stage field"][0] is True and "work notes" in checks["stage field"][1]
    assert checks["table sys_journal_field readable"][0] is False
    assert "Insufficient rights" in checks["table sys_journal_field readable"][1]
    assert checks["table incident readable"][0] and checks["Batch API"][0]
    # an instance that still offers only an older release's resolution codes
    ok, detail, fix = checks["choice values"]
    assert not ok and "close_code 'Solution provided' is not a choice" in detail and "Solved (Permanently)" in detail
    assert "write.close_code" in fix
    assert query_of(rsps.calls[1]) == ("name=incident^elementINstate,close_code,major_incident_state,impact,urgency"
                                       "^inactive=false^ORDERBYsys_id")
    assert {c.request.method for c in rsps.calls} == {"GET", "POST"}
    assert [item["method"] for item in body_of(rsps.calls[-1])["rest_requests"]] == ["GET"]  # doctor never writes


def test_only_the_servicenow_client_imports_pysnow() -> None:
    importers = [path.relative_to(ROOT) for path in [ROOT / "cli.py", *(ROOT / "connector").rglob("*.py")]
                 if "import pysnow" in path.read_text(encoding="utf-8")]
    assert importers == [Path("connector/platforms/servicenow/client.py")]


def test_a_javascript_value_is_refused_in_an_encoded_query() -> None:
    from connector.platforms.servicenow import QueryValueError, query_value

    with pytest.raises(QueryValueError, match="javascript"):
        query_value("javascript:gs.getUser()")


# -- reading back the change and the review tasks --------------------------------------------------------------


def test_fetch_followups_reads_changes_and_tasks_in_one_query_each(make: Callable[..., ServiceNowPlatform],
                                                                    rsps: responses.RequestsMock) -> None:
    other = sid(77)
    change_a, change_b = sid(500), sid(501)
    rsps.get(f"{BASE}/api/now/table/change_request", json={"result": [
        {"sys_id": change_a, "number": "CHG0000001", "state": "-1", "short_description": "Resolution plan"},
        {"sys_id": change_b, "number": "CHG0000002", "state": "3", "short_description": "Hotfix"}]},
        headers={"X-Total-Count": "2"})
    rsps.get(f"{BASE}/api/now/table/incident_task", json={"result": [
        {"sys_id": sid(601), "number": "TASK0000002", "state": "3", "short_description": "Root cause", "incident": MI},
        {"sys_id": sid(600), "number": "TASK0000001", "state": "2", "short_description": "Review meeting",
         "incident": MI},
        {"sys_id": sid(602), "number": "TASK0000003", "state": "7", "short_description": "Runbook", "incident": MI},
        {"sys_id": sid(603), "number": "TASK0000004", "state": "1", "short_description": "Other", "incident": other}]},
        headers={"X-Total-Count": "4"})
    platform = make()
    found = platform.fetch_followups([MI, other, "new-123"], {MI: change_a, other: change_b})
    assert len(rsps.calls) == 2, "one query for the changes, one for the tasks; nothing for a new- id"
    assert query_of(rsps.calls[0]) == f"sys_idIN{change_a},{change_b}^ORDERBYsys_id"
    assert query_of(rsps.calls[1]) == f"incidentIN{MI},{other}^ORDERBYsys_id"
    assert {"sys_id", "number", "state"} <= set(params_of(rsps.calls[1])["sysparm_fields"].split(","))
    assert found[MI]["change"] == {"id": change_a, "key": "CHG0000001", "state": "in_progress"}
    assert found[other]["change"] == {"id": change_b, "key": "CHG0000002", "state": "closed"}
    assert [(t["key"], t["state"], t["title"]) for t in found[MI]["tasks"]] == [
        ("TASK0000001", "in_progress", "Review meeting"), ("TASK0000002", "closed", "Root cause"),
        ("TASK0000003", "canceled", "Runbook")]
    assert [t["key"] for t in found[other]["tasks"]] == ["TASK0000004"]
    assert "new-123" not in found
    assert isinstance(platform, Platform)


def test_fetch_followups_reads_the_incident_only_when_its_change_is_unknown(make: Callable[..., ServiceNowPlatform],
                                                                           rsps: responses.RequestsMock) -> None:
    change = sid(500)
    rsps.get(TABLE, json={"result": [row(MI, rfc=change)]}, headers={"X-Total-Count": "1"})
    rsps.get(f"{BASE}/api/now/table/change_request", json={"result": [
        {"sys_id": change, "number": "CHG0000001", "state": "0"}]}, headers={"X-Total-Count": "1"})
    rsps.get(f"{BASE}/api/now/table/incident_task", json={"result": []}, headers={"X-Total-Count": "0"})
    found = make().fetch_followups([MI])
    assert len(rsps.calls) == 3
    assert query_of(rsps.calls[0]) == f"sys_idIN{MI}^ORDERBYsys_id"
    assert found == {MI: {"change": {"id": change, "key": "CHG0000001", "state": "resolved"}, "tasks": []}}


def test_fetch_followups_without_a_change_skips_the_change_query(make: Callable[..., ServiceNowPlatform],
                                                                 rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/api/now/table/incident_task", json={"result": []}, headers={"X-Total-Count": "0"})
    assert make().fetch_followups([MI], {MI: None}) == {MI: {"change": None, "tasks": []}}
    assert len(rsps.calls) == 1


def test_fetch_followups_refuses_an_id_that_would_change_the_query(make: Callable[..., ServiceNowPlatform],
                                                                   rsps: responses.RequestsMock) -> None:
    with pytest.raises(QueryValueError):
        make().fetch_followups([MI], {MI: "abc^ORsys_id!=x"})
    assert len(rsps.calls) == 0
