"""Contract checks of Jira Cloud REST v3 requests and responses against Atlassian's OpenAPI document.

The spec (``jira-platform-swagger-v3.v3.json``, see ``shared/specs/README.md``) is found through the
``JIRA_OPENAPI_SPEC`` environment variable or next to the repository (``../shared/specs``); it is loaded
once and cached. Only ``/rest/api/3`` paths are checked; anything else (the simulator's ``/__sim``
endpoints, Data Center ``/rest/api/2``, the JSM Incidents API) returns no findings.

How a call is checked:

1. The path is matched against the spec's path templates (literal segments win over parameters) and the
   operation picked by method.
2. openapi-core (spec validation off, as the spec itself does not pass it) validates query/path parameters
   and the JSON body of the request, or the JSON body of the response for the documented status code.
   Component schemas are strict (``additionalProperties: false``), ``nullable`` and ``readOnly`` /
   ``writeOnly`` follow OpenAPI 3.0.
3. Deliberate relaxations, each matching real Jira behaviour the spec gets wrong or leaves open:
   ``date-time`` accepts Jira's ``2023-06-24T19:24:50.000+0000`` (the spec's own examples use it);
   an empty body is accepted where the documented schema is the empty schema ``{}`` (``201`` of
   ``POST /issueLink``, ``204`` s); an error status the spec does not document (``410`` of the removed
   search) or documents without content is validated against ``ErrorCollection``; ``{"accountId": null}``
   is accepted by ``PUT /issue/{key}/assignee`` (the operation's description: null unassigns).
4. Stricter than the spec: ``IssueBean.fields`` is free-form in the spec, so the well-known system fields
   (status, issuetype, priority, project, users, components, comment, issuelinks, timestamps) are checked
   against their component schemas; an ``issuelinks`` entry must carry exactly one of ``inwardIssue`` /
   ``outwardIssue`` (the spec's ``IssueLink`` requires both, which only holds for ``GET /issueLink/{id}``).

5. Outside the platform document: ``/rest/servicedeskapi`` request participants are checked against their
   component schemas in the JSM document (``jsm-servicedesk-swagger.v3.json``: ``RequestParticipantUpdateDTO``,
   ``PagedDTOUserDTO``). The JSM **Incidents** API has no public OpenAPI document (``shared/specs/README.md``):
   its exchanges are checked against the shapes documented at developer.atlassian.com/cloud/incidents/rest/
   (api-group-major-incident, -responders, -stakeholders; summarised in ``shared/reference/jira.md`` §7-§8),
   written out in :data:`INCIDENTS_SHAPES`: numeric issue ids in the paths, ``{"majorIncident": <boolean>}``,
   ``{"responders": [{"ari": <user or team ARI>}]}``, ``{"stakeholders": [{"ari": <user ARI>}]}``.

Every function returns a list of human-readable findings (empty = valid).
"""

from __future__ import annotations

import copy
import json
import os
import re
import warnings
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import parse_qs

SPEC_FILE = "jira-platform-swagger-v3.v3.json"
SPEC_HOST = "https://your-domain.atlassian.net"
API_PREFIX = "/rest/api/3/"

_JIRA_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:?\d{2})$"
)
_ISSUE_OPERATIONS = {
    ("get", "/rest/api/3/issue/{issueIdOrKey}"),
    ("get", "/rest/api/3/search/jql"),
    ("post", "/rest/api/3/search/jql"),
}
_FIELD_SCHEMAS = {
    "status": "StatusDetails",
    "issuetype": "IssueTypeDetails",
    "priority": "Priority",
    "project": "ProjectDetails",
    "reporter": "UserDetails",
    "assignee": "UserDetails",
    "creator": "UserDetails",
    "comment": "PageOfComments",
    "resolution": "Resolution",
}
# Request properties the operation's description allows to be null although the schema does not.
_NULL_ALLOWED = {
    ("put", "/rest/api/3/issue/{issueIdOrKey}/assignee"): ("accountId", "name"),  # null = unassign
}
_DATETIME_FIELDS = ("created", "updated", "resolutiondate", "statuscategorychangedate", "lastViewed")


def spec_path() -> Path:
    """Where the Jira platform OpenAPI document is (raises ``FileNotFoundError`` if nowhere)."""
    candidates = []
    if os.environ.get("JIRA_OPENAPI_SPEC"):
        candidates.append(Path(os.environ["JIRA_OPENAPI_SPEC"]))
    repo = Path(__file__).resolve().parents[1]
    candidates += [repo.parent / "shared" / "specs" / SPEC_FILE, repo / "specs" / SPEC_FILE,
                   repo / "tests" / "specs" / SPEC_FILE, Path("/work/shared/specs") / SPEC_FILE]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{SPEC_FILE} not found (set JIRA_OPENAPI_SPEC); looked in "
                            + ", ".join(str(c) for c in candidates))


@lru_cache(maxsize=1)
def load_spec() -> dict[str, Any]:
    """The parsed OpenAPI document (cached)."""
    with spec_path().open(encoding="utf-8") as handle:
        spec: dict[str, Any] = json.load(handle)
    return spec


def is_jira_datetime(value: object) -> bool:
    """RFC 3339 date-time or Jira's variant with a colon-less offset (``+0000``)."""
    if not isinstance(value, str):
        return True  # format keywords only constrain strings
    if not _JIRA_DATETIME.match(value):
        return False
    text = value.replace("z", "Z").replace("t", "T")
    if re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


@lru_cache(maxsize=1)
def _openapi() -> Any:
    from openapi_core import OpenAPI
    from openapi_core.configurations import Config

    with warnings.catch_warnings():
        # "Unsupported scheme type" for the security schemes: irrelevant to body validation.
        warnings.simplefilter("ignore")
        return OpenAPI.from_dict(
            load_spec(),
            config=Config(spec_validator_cls=None, extra_format_validators={"date-time": is_jira_datetime}),
        )


@lru_cache(maxsize=1)
def _templates() -> list[tuple[re.Pattern[str], str, int]]:
    out = []
    for template in load_spec()["paths"]:
        if not template.startswith(API_PREFIX):
            continue
        regex = "^" + re.sub(r"\\\{([^}]+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"
        # Python group names must be identifiers; spec parameter names are.
        literal = sum(1 for seg in template.split("/") if seg and not seg.startswith("{"))
        out.append((re.compile(regex), template, literal))
    # Prefer templates with more literal segments: /issue/bulk beats /issue/{issueIdOrKey}.
    out.sort(key=lambda item: -item[2])
    return out


def match_path(path: str) -> tuple[str, dict[str, str]] | None:
    """The spec path template matching a concrete ``/rest/api/3`` path, with its parameters."""
    if not path.startswith(API_PREFIX):
        return None
    path = path.rstrip("/")
    for regex, template, _ in _templates():
        found = regex.match(path)
        if found:
            return template, found.groupdict()
    return None


def operation(method: str, path: str) -> tuple[str, dict[str, Any]] | None:
    """``(template, operation object)`` for a call, or ``None`` when the spec has no such operation."""
    matched = match_path(path)
    if matched is None:
        return None
    op = load_spec()["paths"][matched[0]].get(method.lower())
    return (matched[0], op) if isinstance(op, dict) else None


def covers(method: str, path: str) -> bool:
    """Whether the spec documents this operation (so it is validated)."""
    return operation(method, path) is not None


@lru_cache(maxsize=1)
def _registry() -> Any:
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    return Registry().with_resource("spec.json", Resource.from_contents(load_spec(),
                                                                        default_specification=DRAFT4))


@lru_cache(maxsize=None)
def _schema_validator(name: str, drop_required: bool = False) -> Any:
    from jsonschema import FormatChecker
    from openapi_schema_validator import OAS30ReadValidator

    checker = copy.deepcopy(OAS30ReadValidator.FORMAT_CHECKER) if OAS30ReadValidator.FORMAT_CHECKER else \
        FormatChecker()
    checker.checks("date-time")(is_jira_datetime)
    if drop_required:
        schema = copy.deepcopy(load_spec()["components"]["schemas"][name])
        schema.pop("required", None)
        # Keep the $refs inside resolvable against the whole document.
        schema = {"allOf": [schema]}
        resolved = _rebase_refs(schema)
        return OAS30ReadValidator(resolved, registry=_registry(), format_checker=checker)
    return OAS30ReadValidator({"$ref": f"spec.json#/components/schemas/{name}"}, registry=_registry(),
                              format_checker=checker)


def _rebase_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (f"spec.json{v}" if k == "$ref" and isinstance(v, str) and v.startswith("#") else
                    _rebase_refs(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rebase_refs(v) for v in node]
    return node


def schema_errors(name: str, instance: Any, where: str = "", drop_required: bool = False) -> list[str]:
    """Findings for ``instance`` against ``#/components/schemas/<name>`` (response semantics); ``where``
    prefixes each finding's location."""
    validator = _schema_validator(name, drop_required)
    out = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path]):
        location = "/".join(str(p) for p in error.absolute_path)
        out.append(f"{where}{location or '(root)'}: {error.message} [{name}]")
    return out


def _describe(exc: BaseException, prefix: str) -> list[str]:
    cause: BaseException | None = exc
    while cause is not None:
        errors = getattr(cause, "schema_errors", None)
        if errors:
            out = []
            for error in errors:
                location = "/".join(str(p) for p in error.absolute_path)
                out.append(f"{prefix}{type(exc).__name__}: {error.message}"
                           + (f" (at /{location})" if location else ""))
            return out
        cause = cause.__cause__ or cause.__context__
    details: list[str] = []
    cause = exc
    while cause is not None and len(details) < 4:
        text = str(cause) or repr(cause)
        if text not in details:
            details.append(text)
        cause = cause.__cause__ or cause.__context__
    return [f"{prefix}{type(exc).__name__}: {' <- '.join(details)}"]


def _query_dict(query: Any) -> dict[str, list[str]]:
    if query is None:
        return {}
    if isinstance(query, str):
        return parse_qs(query.lstrip("?"), keep_blank_values=True)
    out: dict[str, list[str]] = {}
    for key, value in dict(query).items():
        if isinstance(value, (list, tuple)):
            out[key] = [str(v) for v in value]
        else:
            out[key] = [str(value).lower() if isinstance(value, bool) else str(value)]
    return out


def _encode(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        try:
            json.loads(body)
            return body.encode("utf-8")
        except ValueError:
            return json.dumps(body).encode("utf-8")
    return json.dumps(body).encode("utf-8")


def validate_request(method: str, path: str, query: Any = None, body: Any = None) -> list[str]:
    """Findings for an outgoing ``/rest/api/3`` request (``query``: dict or query string; ``body``: the JSON
    value, or ``None`` for no body). Paths outside ``/rest/api/3`` or not in the spec are skipped."""
    from openapi_core.testing import MockRequest

    matched = match_path(path)
    if matched is None:
        return []
    template, params = matched
    where = f"{method.upper()} {path}: "
    if operation(method, path) is None:
        return [f"{where}the spec has no {method.upper()} operation for {template}"]
    nullable = _NULL_ALLOWED.get((method.lower(), template), ())
    if nullable and isinstance(body, dict):
        body = {k: v for k, v in body.items() if not (k in nullable and v is None)}
    request = MockRequest(SPEC_HOST, method.lower(), path.rstrip("/"), path_pattern=template,
                          args=_query_dict(query), view_args=params, data=_encode(body) or None,
                          content_type="application/json")
    findings: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for error in _openapi().request_validator.iter_errors(request):
            findings.extend(_describe(error, where + "request "))
    return findings


def validate_response(method: str, path: str, status: int, body: Any, query: Any = None) -> list[str]:
    """Findings for a ``/rest/api/3`` response (``body``: the parsed JSON, ``None`` for empty)."""
    from openapi_core.testing import MockRequest, MockResponse

    matched = match_path(path)
    if matched is None:
        return []
    template, params = matched
    where = f"{method.upper()} {path} -> {status}: "
    found = operation(method, path)
    if found is None:
        return [] if status in (404, 405) else [f"{where}the spec has no {method.upper()} operation for {template}"]
    op = found[1]
    responses = op.get("responses", {})
    documented = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX") or responses.get("default")
    empty = body is None or body == ""
    if documented is None:
        if status >= 400:
            return [] if empty else schema_errors("ErrorCollection", body, where)
        return [f"{where}status {status} is not documented for {method.upper()} {template}"]
    content = documented.get("content") or {}
    if not content:
        if status >= 400:
            return [] if empty else schema_errors("ErrorCollection", body, where)
        return [] if empty else [f"{where}the spec documents no body for this status"]
    media = content.get("application/json") or next(iter(content.values()))
    if empty and not media.get("schema"):
        return []
    request = MockRequest(SPEC_HOST, method.lower(), path.rstrip("/"), path_pattern=template,
                          args=_query_dict(query), view_args=params)
    response = MockResponse(_encode(body), status_code=status, content_type="application/json")
    findings: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for error in _openapi().response_validator.iter_errors(request, response):
            findings.extend(_describe(error, where))
    if status == 200 and (method.lower(), template) in _ISSUE_OPERATIONS and isinstance(body, dict):
        issues = body.get("issues") if "issues" in body else [body]
        for index, issue in enumerate(issues or []):
            if isinstance(issue, dict):
                findings.extend(issue_field_errors(issue, f"{where}issues/{index}/" if "issues" in body else where))
    return findings


def issue_field_errors(issue: dict[str, Any], where: str = "") -> list[str]:
    """Stricter checks of well-known system fields inside ``IssueBean.fields`` (free-form in the spec);
    ``where`` prefixes each finding's location."""
    fields = issue.get("fields")
    if fields is None:
        return []
    if not isinstance(fields, dict):
        return [f"{where}fields: not an object"]
    findings: list[str] = []
    for name, schema in _FIELD_SCHEMAS.items():
        value = fields.get(name)
        if value is not None:
            findings.extend(schema_errors(schema, value, f"{where}fields/{name}/"))
    for name in _DATETIME_FIELDS:
        value = fields.get(name)
        if value is not None and not (isinstance(value, str) and is_jira_datetime(value)):
            findings.append(f"{where}fields/{name}: {value!r} is not a Jira date-time")
    for name in ("labels",):
        value = fields.get(name)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            findings.append(f"{where}fields/{name}: expected an array of strings")
    components = fields.get("components")
    if components is not None:
        if not isinstance(components, list):
            findings.append(f"{where}fields/components: expected an array")
        else:
            for index, item in enumerate(components):
                findings.extend(schema_errors("ProjectComponent", item, f"{where}fields/components/{index}/"))
    links = fields.get("issuelinks")
    if links is not None:
        if not isinstance(links, list):
            findings.append(f"{where}fields/issuelinks: expected an array")
        else:
            for index, link in enumerate(links):
                at = f"{where}fields/issuelinks/{index}"
                findings.extend(schema_errors("IssueLink", link, at + "/", drop_required=True))
                if isinstance(link, dict):
                    sides = [k for k in ("inwardIssue", "outwardIssue") if k in link]
                    if len(sides) != 1:
                        findings.append(f"{at}: expected exactly one of inwardIssue/outwardIssue, got {sides}")
                    if "type" not in link:
                        findings.append(f"{at}: 'type' is a required property")
    return findings


JSM_SPEC_FILE = "jsm-servicedesk-swagger.v3.json"
ARI = r"^ari:cloud:identity::(user|team)/[^/\s]+$"
USER_ARI = r"^ari:cloud:identity::user/[^/\s]+$"
INCIDENTS_PATH = re.compile(r"^/jsm/incidents/cloudId/[0-9a-f-]{36}/v1/(?P<what>incident|post-incident-review)/"
                            r"(?P<id>[^/]+)(?P<rest>/.*)?$")


def _strict(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _aris(pattern: str) -> dict[str, Any]:
    return {"type": "array", "minItems": 1, "items": _strict({"ari": {"type": "string", "pattern": pattern}}, ["ari"])}


INCIDENTS_SHAPES: dict[tuple[str, str], tuple[dict[str, Any] | None, dict[str, Any] | None]] = {
    ("POST", "/major"): (_strict({"majorIncident": {"type": "boolean"}}, ["majorIncident"]), None),
    ("GET", "/major"): (None, _strict({"majorIncident": {"type": "boolean"}}, ["majorIncident"])),
    ("POST", "/responder/add"): (_strict({"responders": _aris(ARI)}, ["responders"]), None),
    ("POST", "/responder/remove"): (_strict({"responders": _aris(ARI)}, ["responders"]), None),
    ("GET", "/responder"): (None, _strict({"responders": {"type": "array", "items": _strict(
        {"ari": {"type": "string", "pattern": ARI}}, ["ari"])}}, ["responders"])),
    ("POST", "/stakeholder/add"): (_strict({"stakeholders": _aris(USER_ARI)}, ["stakeholders"]), None),
    ("POST", "/stakeholder/remove"): (_strict({"stakeholders": _aris(USER_ARI)}, ["stakeholders"]), None),
    ("GET", "/primary-incident"): (None, {"type": "object", "required": ["summary", "status"]}),
}
"""``(method, path tail) -> (request body schema, 2xx response body schema)`` of the JSM Incidents API, from its
reference pages (no OpenAPI document is public); ``None``: no body documented."""


@lru_cache(maxsize=1)
def _jsm_registry() -> Any:
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    with (spec_path().parent / JSM_SPEC_FILE).open(encoding="utf-8") as handle:
        spec = json.load(handle)
    return Registry().with_resource("jsm.json", Resource.from_contents(spec, default_specification=DRAFT4))


def jsm_schema_errors(name: str, instance: Any, where: str = "") -> list[str]:
    """Findings for ``instance`` against ``#/components/schemas/<name>`` of the JSM servicedeskapi document."""
    from openapi_schema_validator import OAS30ReadValidator

    validator = OAS30ReadValidator({"$ref": f"jsm.json#/components/schemas/{name}"}, registry=_jsm_registry())
    return [f"{where}{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message} [{name}]"
            for e in validator.iter_errors(instance)]


def validate_beyond_platform(exchange: dict[str, Any]) -> list[str]:
    """Findings for an exchange outside ``/rest/api/3``: request participants (JSM document) and the Incidents
    API (its documented shapes). Other paths: none."""
    from jsonschema import Draft4Validator

    method, path, status = exchange["method"], exchange["path"], int(exchange["status"])
    where = f"{method} {path} -> {status}: "
    if path.startswith("/rest/servicedeskapi/request/") and path.endswith("/participant"):
        out = []
        if method == "POST" and 200 <= status < 300:
            out += jsm_schema_errors("RequestParticipantUpdateDTO", exchange.get("request_body"), where + "request ")
        if status == 200:
            out += jsm_schema_errors("PagedDTOUserDTO", exchange.get("response_body"), where)
        return out
    found = INCIDENTS_PATH.match(path)
    if not found:
        return []
    out = []
    if not found["id"].isdigit() and 200 <= status < 300:
        out.append(f"{where}the Incidents API takes the numeric issue id, not {found['id']!r}")
    tail = found["rest"] or ""
    shapes = INCIDENTS_SHAPES.get((method, tail if found["what"] == "incident" else "/primary-incident"))
    if shapes is None:
        return out + [f"{where}not an operation of the documented Incidents API"]
    request_schema, response_schema = shapes
    if request_schema is not None and 200 <= status < 300:
        out += [f"{where}request {e.message}" for e in Draft4Validator(request_schema).iter_errors(
            exchange.get("request_body"))]
    if response_schema is not None and status == 200:
        out += [f"{where}{e.message}" for e in Draft4Validator(response_schema).iter_errors(exchange.get("response_body"))]
    return out


def validate_exchange(exchange: dict[str, Any], requests_too: bool = True) -> list[str]:
    """Findings for one recorded exchange (``{"method","path","query","request_body","status",
    "response_body"}``, as :class:`connector.sim.jira.JiraSim` records them)."""
    method, path = exchange["method"], exchange["path"]
    if not path.startswith(API_PREFIX):
        return validate_beyond_platform(exchange)
    findings = validate_response(method, path, int(exchange["status"]), exchange.get("response_body"),
                                 exchange.get("query"))
    if requests_too:
        findings = validate_request(method, path, exchange.get("query"), exchange.get("request_body")) + findings
    return findings


def validate_exchanges(exchanges: Iterable[dict[str, Any]]) -> list[str]:
    """Findings for many exchanges. Responses are always checked; a request is checked when the server
    accepted it (2xx): a spec-invalid request that succeeds means the server is too lenient, while
    requests a test sends on purpose to provoke a 4xx are allowed to be invalid."""
    findings: list[str] = []
    for exchange in exchanges:
        if exchange.get("fault"):
            continue
        findings.extend(validate_exchange(exchange, requests_too=200 <= int(exchange["status"]) < 300))
    return findings
