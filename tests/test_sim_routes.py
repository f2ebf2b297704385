"""The simulators' shared routing: path templates, one dispatcher, and each platform's route table, reached
over real HTTP (every route answers, faults fire on every route, unknown paths and wrong methods answer the
platform's way)."""

from __future__ import annotations

import re
from typing import Any, Iterator

import pytest
import requests

from connector.sim.base import ANY_METHOD, Route, Router, SimRequest, SimResponse, SimServer, compile_path
from connector.sim.jira import JiraSim
from connector.sim.servicenow import ServiceNowSim

# -- path templates and the dispatcher -------------------------------------------------------------


@pytest.mark.parametrize(("template", "path", "groups"), [
    ("/rest/api/{version:2|3|latest}/issue/{key}", "/rest/api/latest/issue/ITSM-1", {"version": "latest", "key": "ITSM-1"}),
    ("/api/now[/{version:v1|v2}]/table/{table}[/]", "/api/now/table/incident/", {"version": None, "table": "incident"}),
    ("/api/now[/{version:v1|v2}]/table/{table}[/]", "/api/now/v2/table/incident", {"version": "v2", "table": "incident"}),
    ("/oauth_token.do", "/oauth_token.do", {}),
], ids=["choices", "optional-absent", "optional-present", "literal-dot"])
def test_template_matches_whole_paths_with_named_parts(template: str, path: str, groups: dict[str, Any]) -> None:
    found = compile_path(template).fullmatch(path)
    assert found is not None and found.groupdict() == groups


@pytest.mark.parametrize(("template", "path"), [
    ("/rest/api/{version:2|3}/issue/{key}", "/rest/api/4/issue/ITSM-1"),
    ("/rest/api/{version:2|3}/issue/{key}", "/rest/api/3/issue/ITSM-1/comment"),
    ("/api/now[/v1]/batch[/]", "/api/now/v1/batch//"),
    ("/oauth_token.do", "/oauth_tokenXdo"),
], ids=["not-a-choice", "longer", "two-slashes", "dot-is-literal"])
def test_template_rejects_other_paths(template: str, path: str) -> None:
    assert compile_path(template).fullmatch(path) is None


@pytest.mark.parametrize("template", ["/a[/b", "/a]/b"], ids=["open", "close"])
def test_unbalanced_optional_part_is_an_error(template: str) -> None:
    with pytest.raises(ValueError, match="unbalanced"):
        compile_path(template)


def test_example_fills_placeholders_and_leaves_optional_parts_out() -> None:
    route = Route("GET", "/api/now[/{version:v1|v2}]/table/{table}/{sys_id}[/]", lambda request, **groups: SimResponse())
    assert route.example(table="incident") == "/api/now/table/incident/x"
    assert Route("GET", "/rest/api/{version:2|3}/x", lambda request: SimResponse()).example() == "/rest/api/2/x"


def _request(method: str, path: str) -> SimRequest:
    return SimRequest(method, path, {}, {}, b"")


def test_dispatch_order_is_auth_then_check_then_method() -> None:
    calls: list[str] = []

    def check(request: SimRequest, name: str) -> SimResponse | None:
        calls.append("check")
        return SimResponse(400) if name == "bad" else None

    router = Router([Route("GET", "/things/{name}", lambda request, name: SimResponse(200, name), check=check),
                     Route("POST", "/login", lambda request: SimResponse(201), public=True)],
                    not_found=lambda request: SimResponse(404), wrong_method=lambda request: SimResponse(405),
                    authorised=lambda request: request.header("Authorization") == "ok",
                    unauthorised=lambda request: SimResponse(401))
    answer = router.dispatch(SimRequest("GET", "/things/a", {}, {"Authorization": "ok"}, b""))
    assert (answer.status, answer.body, calls) == (200, "a", ["check"])
    assert router.dispatch(_request("GET", "/things/a")).status == 401 and calls == ["check"]
    assert router.dispatch(_request("GET", "/nowhere")).status == 401
    assert router.dispatch(_request("GET", "/nowhere"), authenticate=False).status == 404
    assert router.dispatch(_request("DELETE", "/things/bad"), authenticate=False).status == 400
    assert router.dispatch(_request("DELETE", "/things/a"), authenticate=False).status == 405
    assert router.dispatch(_request("POST", "/login")).status == 201
    assert router.dispatch(_request("GET", "/login")).status == 405  # public path: no credentials asked


def test_a_route_the_site_does_not_serve_is_an_unknown_path() -> None:
    served = {"on": False}
    router = Router([Route("GET", "/feature", lambda request: SimResponse(200), serves=lambda groups: served["on"])],
                    not_found=lambda request: SimResponse(404), wrong_method=lambda request: SimResponse(405),
                    authorised=lambda request: True, unauthorised=lambda request: SimResponse(401))
    assert router.dispatch(_request("POST", "/feature")).status == 404
    served["on"] = True
    assert router.dispatch(_request("POST", "/feature")).status == 405
    assert router.dispatch(_request("GET", "/feature")).status == 200


# -- every route of each platform over HTTP ---------------------------------------------------------


def _methods(route: Route) -> list[str]:
    return ["GET"] if route.methods == ANY_METHOD else route.methods.split()


def _cases(routes: tuple[Route, ...]) -> list[tuple[int, str]]:
    return [(index, method) for index, route in enumerate(routes) for method in _methods(route)]


def _case_id(routes: tuple[Route, ...], case: tuple[int, str]) -> str:
    return f"{case[1]} {routes[case[0]].path}"


UNKNOWN_SN_PATH = "Requested URI does not represent any resource"
SN_ROUTES = ServiceNowSim().router.routes
JIRA_ROUTES = JiraSim().router.routes


@pytest.fixture(scope="module")
def servicenow() -> Iterator[tuple[ServiceNowSim, SimServer, dict[str, str]]]:
    sim = ServiceNowSim()
    record = sim.insert("incident", {"short_description": "routes"})
    with sim.server() as server:
        yield sim, server, {"table": "incident", "sys_id": record["sys_id"]}


@pytest.fixture(scope="module")
def jira() -> Iterator[tuple[JiraSim, SimServer, dict[str, str]]]:
    sim = JiraSim()
    issue = sim.create_issue({"summary": "routes"})
    with sim.server() as server:
        yield sim, server, {"version": "3", "key": issue["key"], "issue_id": issue["id"], "cloud_id": sim.cloud_id,
                            "prop": "mim", "link_id": "10100"}


def _send(server: SimServer, method: str, path: str, auth: tuple[str, str]) -> requests.Response:
    return requests.request(method, server.url + path, auth=auth, json={}, headers={"Accept": "application/json"},
                            timeout=5)


@pytest.mark.parametrize("case", _cases(SN_ROUTES), ids=[_case_id(SN_ROUTES, c) for c in _cases(SN_ROUTES)])
def test_every_servicenow_route_is_reachable(servicenow: tuple[ServiceNowSim, SimServer, dict[str, str]],
                                             case: tuple[int, str]) -> None:
    sim, server, values = servicenow
    route, method = sim.router.routes[case[0]], case[1]
    path = route.example(**values)
    found = sim.router.resolve(method, path)
    assert found.route is route and found.known is not None
    assert (found.known.check, found.known.public) == (route.check, route.public)  # one path, one check
    response = _send(server, method, path, (sim.user, sim.password))
    assert response.status_code not in (401, 405) and UNKNOWN_SN_PATH not in response.text, response.text
    if method == "DELETE":
        values["sys_id"] = sim.insert("incident", {})["sys_id"]


@pytest.mark.parametrize("case", _cases(JIRA_ROUTES), ids=[_case_id(JIRA_ROUTES, c) for c in _cases(JIRA_ROUTES)])
def test_every_jira_route_is_reachable(jira: tuple[JiraSim, SimServer, dict[str, str]], case: tuple[int, str]) -> None:
    sim, server, values = jira
    route, method = sim.router.routes[case[0]], case[1]
    path = route.example(**values)
    found = sim.router.resolve(method, path)
    assert found.route is route and found.known is not None
    assert (found.known.check, found.known.public) == (route.check, route.public)  # one path, one check
    response = _send(server, method, path, (sim.email, sim.token))
    assert response.status_code not in (401, 405) and "null for uri" not in response.text, response.text


@pytest.mark.parametrize(("platform", "case"), [("servicenow", c) for c in _cases(SN_ROUTES)]
                         + [("jira", c) for c in _cases(JIRA_ROUTES)],
                         ids=[f"servicenow {_case_id(SN_ROUTES, c)}" for c in _cases(SN_ROUTES)]
                         + [f"jira {_case_id(JIRA_ROUTES, c)}" for c in _cases(JIRA_ROUTES)])
def test_faults_fire_on_every_route(request: pytest.FixtureRequest, platform: str, case: tuple[int, str]) -> None:
    sim, server, values = request.getfixturevalue(platform)
    route, method = sim.router.routes[case[0]], case[1]
    path = route.example(**values)
    rule = server.add_fault("503", count=1, retry_after=3, match=f"^{method} {re.escape(path)}$")
    try:
        response = _send(server, method, path, ("nobody", "wrong"))
    finally:
        server.clear_faults()
    assert (response.status_code, response.headers["Retry-After"], rule.fired) == (503, "3", 1)


@pytest.mark.parametrize("path", ["/api/now/tables/incident", "/api/now/v3/table/incident", "/api/now/table",
                                  "/api/now/table/incident/a/b", "/"])
def test_servicenow_unknown_path_is_its_400(servicenow: tuple[ServiceNowSim, SimServer, dict[str, str]],
                                           path: str) -> None:
    sim, server, _ = servicenow
    response = _send(server, "GET", path, (sim.user, sim.password))
    assert response.status_code == 400
    assert response.json() == {"error": {"message": "Requested URI does not represent any resource", "detail": None},
                               "status": "failure"}


@pytest.mark.parametrize("path", ["/rest/api/3/nope", "/rest/api/4/myself", "/rest/api/3", "/rest/agile/1.0/board", "/"])
def test_jira_unknown_path_is_its_404(jira: tuple[JiraSim, SimServer, dict[str, str]], path: str) -> None:
    sim, server, _ = jira
    response = _send(server, "GET", path, (sim.email, sim.token))
    assert response.status_code == 404
    assert response.json() == {"message": f"null for uri: {server.url}{path}", "status-code": 404}


def test_wrong_method_answers_each_platform_way(servicenow: tuple[ServiceNowSim, SimServer, dict[str, str]],
                                                jira: tuple[JiraSim, SimServer, dict[str, str]]) -> None:
    sn_sim, sn_server, _ = servicenow
    sn = _send(sn_server, "DELETE", "/api/now/stats/incident", (sn_sim.user, sn_sim.password))
    assert (sn.status_code, sn.json()["error"]["message"]) == (405, "Method not Supported")
    jira_sim, jira_server, values = jira
    answer = _send(jira_server, "DELETE", f"/rest/api/3/issue/{values['key']}/comment", (jira_sim.email, jira_sim.token))
    assert (answer.status_code, answer.content) == (405, b"")


@pytest.mark.parametrize(("method", "path", "headers", "status"), [
    ("DELETE", "/api/now/table/Bad-Name", {}, 400),
    ("DELETE", "/api/now/table/incident", {"Accept": "text/xml"}, 406),
    ("POST", "/api/now/table/incident/0123", {"Content-Type": "text/plain"}, 415),
    ("POST", "/api/now/table/incident/0123", {}, 405),
], ids=["table-name", "accept", "content-type", "then-method"])
def test_servicenow_table_api_checks_the_resource_before_the_method(
        servicenow: tuple[ServiceNowSim, SimServer, dict[str, str]], method: str, path: str, headers: dict[str, str],
        status: int) -> None:
    sim, server, _ = servicenow
    response = requests.request(method, server.url + path, auth=(sim.user, sim.password), data=b"{}",
                                headers={"Accept": "application/json", **headers}, timeout=5)
    assert response.status_code == status


def test_jira_data_center_serves_v2_only() -> None:
    sim = JiraSim(flavour="dc", token="pat")
    with sim.server() as server:
        bearer = {"Authorization": "Bearer pat"}
        assert requests.get(server.url + "/rest/api/2/myself", headers=bearer, timeout=5).status_code == 200
        assert requests.get(server.url + "/rest/api/latest/myself", headers=bearer, timeout=5).status_code == 200
        for path in ("/rest/api/3/myself", "/_edge/tenant_info"):
            assert requests.delete(server.url + path, headers=bearer, timeout=5).status_code == 404
