"""Jira Cloud (REST v3) and Jira Data Center (REST v2) adapter for Jira Service Management projects.

Transport and syntax only: JQL building (quoted, escaped values; epoch-millisecond time bounds), paging
(Cloud ``/search/jql`` with ``nextPageToken``; Data Center ``/search`` with ``startAt``), site discovery
(flavour, caller time zone, the major incident custom field by schema type, link and issue types), typed
errors under the one :class:`~connector.platforms.retry.RetryPolicy`, and the write verbs. Which writes to
make is decided by the engine; this module only makes them idempotent:

* every issue the connector declares, links, creates or resolves carries the ``mim`` entity property
  saying what it did (the declared major incident also gets ``marker``, read back as ``Ticket.marker``);
* every comment ends with a ``[mim-<hash>]`` line and every created issue carries that tag as a label,
  so a rerun after a crash or a lost state file reads before it writes and skips what is there;
* links are read before they are written, since Jira answers 201 to a duplicate link as well.

Derived keys added to a raw issue before the mapping reads it (``to_ticket``): ``_major``, ``_parent``,
``_stage``, ``_marker``, ``_change`` and ``_ci`` (see :meth:`JiraPlatform.derived_fields`).
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict, deque
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Hashable, Iterator, Literal, Sequence, TypeVar
from urllib.parse import urlsplit

import requests
from pydantic import SecretStr
from requests.auth import AuthBase, HTTPBasicAuth

from connector.core.actions import (
    Action,
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
from connector.core.mapping import Mapping
from connector.core.settings import JiraSettings, SettingsError
from connector.core.ticket import Stage, Ticket
from connector.core.write_settings import JiraWrite
from connector.platforms.base import ApplyResult, Resolver, Watermark, doctor_check, marker_tag
from connector.platforms.errors import (
    ClientError,
    NotFound,
    PermissionDenied,
    PlatformError,
    UnexpectedResponse,
)
from connector.platforms.paging import OffsetPaginator, Page, Paginator, TokenPaginator, paginate, remember
from connector.platforms.retry import (
    RETRY_TABLE,
    UNREADABLE_2XX,
    ResponseAction,
    RetryPolicy,
    error_for_status,
    error_from,
    parse_retry_after,
    resolve_exception,
)

__all__ = ["JiraPlatform", "jql_string", "jql_epoch_ms", "adf_document", "adf_plain_text"]

log = logging.getLogger("mim.jira")  # under "mim", so the redacting handler sees every record

T = TypeVar("T")

MAJOR_INCIDENT_VALUE = "MAJOR_INCIDENT"
SERVICES_FIELD_TYPE = "com.atlassian.jira.plugins.service-entity:service-entity-field-cftype"
INTERNAL_COMMENT_PROPERTY = "sd.public.comment"
DISCOVERY_VERSION = 1
CACHE_SIZE = 5000
MAX_RECONCILE = 50
STAGE_ORDER = [s.value for s in Stage]
DEFAULT_STATE_STATUSES = {"new": "Open", "in_progress": "In Progress", "on_hold": "Pending",
                          "closed": "Closed", "canceled": "Canceled"}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ACCOUNT_ID = re.compile(r"^(?:[0-9a-f]{24}|\d+:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
"""Jira Cloud account ids: 24 hex digits (older) or ``<number>:<uuid>``."""


# ------------------------------------------------------------------------------------------------------------
# JQL and ADF syntax
# ------------------------------------------------------------------------------------------------------------


def jql_string(value: object) -> str:
    """``value`` as one quoted JQL string literal: backslash, double quote and control characters are
    escaped, so a quote or `` OR `` inside a value can never change the query."""
    text = str(value)
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def jql_epoch_ms(value: datetime) -> int:
    """Milliseconds since the epoch of an aware (or UTC-naive) time. Written *unquoted* in JQL it is an
    absolute instant; a quoted local date would be read in the API user's profile time zone."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return (value - _EPOCH) // timedelta(milliseconds=1)


def adf_document(text: str) -> dict[str, Any]:
    """Plain text as a minimal Atlassian Document Format document, one paragraph per line."""
    content: list[dict[str, Any]] = []
    for line in text.split("\n"):
        paragraph: dict[str, Any] = {"type": "paragraph", "content": []}
        if line:
            paragraph["content"].append({"type": "text", "text": line})
        content.append(paragraph)
    return {"type": "doc", "version": 1, "content": content}


def adf_plain_text(node: Any) -> str:
    """The text of an ADF document (block nodes become lines); strings are returned as they are."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        return "\n".join(adf_plain_text(child) for child in node)
    if not isinstance(node, dict):
        return ""
    if node.get("type") == "text":
        return str(node.get("text", ""))
    if node.get("type") == "hardBreak":
        return "\n"
    parts = [adf_plain_text(child) for child in node.get("content") or []]
    if node.get("type") in ("doc", "bulletList", "orderedList", "table", "tableRow", "listItem"):
        return "\n".join(parts)
    return "".join(parts)


def _is_adf(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == "doc" and "content" in value


def _updated_ms(issue: dict[str, Any]) -> int | None:
    text = (issue.get("fields") or {}).get("updated")
    if not isinstance(text, str):
        return None
    iso = text.replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", iso):
        iso = iso[:-2] + ":" + iso[-2:]
    try:
        return jql_epoch_ms(datetime.fromisoformat(iso))
    except ValueError:
        return None


def _flag_on(value: Any) -> bool:
    """Whether a major incident field value means "major" (read defensively: string, option, list)."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().upper() == MAJOR_INCIDENT_VALUE
    if isinstance(value, dict):
        return any(_flag_on(value.get(k)) for k in ("value", "name", "id"))
    if isinstance(value, list):
        return any(_flag_on(v) for v in value)
    return False


def _same_link_type(link: dict[str, Any], link_type: dict[str, Any]) -> bool:
    """Whether an ``issuelinks`` entry is of the discovered ``link_type`` (by id, else by name)."""
    kind = link.get("type") or {}
    return str(kind.get("id")) == link_type["id"] or str(kind.get("name", "")).lower() == link_type["name"].lower()


def _same_issue_type(found: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return bool(found) and (str(found.get("id")) == str(wanted.get("id"))
                            or str(found.get("name", "")).lower() == str(wanted.get("name", "")).lower())


def _first_name(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("name") or value.get("value") or value.get("id")
    if value is None:
        return None
    text = str(value).strip()
    return text or None


class _BearerAuth(AuthBase):
    """``Authorization: Bearer <PAT>`` (Data Center). Its repr never shows the token."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(token=**********)"


class _Dependency(Exception):
    """An action cannot run because an action it depends on has not succeeded."""


class _ApplyContext:
    """Per-``apply`` bookkeeping: parents created so far (synthetic id -> real id) and failed creations."""

    def __init__(self, resolve: Resolver) -> None:
        self._resolve = resolve
        self.created: dict[str, str] = {}
        self.failed: dict[str, str] = {}

    def issue_id(self, target: str) -> str:
        if target in self.created:
            return self.created[target]
        if target in self.failed:
            raise _Dependency(f"depends on {self.failed[target]}, which failed")
        resolved = self._resolve(target)
        if resolved:
            return resolved
        if target.startswith("new-"):
            raise _Dependency(f"the major incident {target} has not been created yet")
        return target


# ------------------------------------------------------------------------------------------------------------
# The adapter
# ------------------------------------------------------------------------------------------------------------


class JiraPlatform:
    """Jira Cloud / Data Center as the sync cycle sees it (implements :class:`~connector.platforms.base.Platform`).

    ``flavour`` is ``"cloud"``, ``"dc"`` or ``"auto"`` (read from ``/serverInfo`` at discovery). Cloud
    authenticates with Basic ``email:api_token`` and talks REST v3 (ADF bodies, ``accountId`` users); Data
    Center with ``Authorization: Bearer <personal access token>`` and REST v2 (plain-text bodies, user
    ``name``). Every request has a timeout and verifies TLS unless ``verify`` says otherwise (a CA bundle
    path is accepted). ``policy`` is the retry policy (default :class:`RetryPolicy`).
    """

    name = "jira"

    def __init__(
        self,
        url: str,
        email: str | None,
        token: str | SecretStr,
        mapping: Mapping,
        *,
        project: str = "ITSM",
        flavour: Literal["auto", "cloud", "dc"] = "auto",
        verify: bool | str = True,
        timeout: float = 30.0,
        policy: RetryPolicy | None = None,
    ) -> None:
        if flavour not in ("auto", "cloud", "dc"):
            raise SettingsError(f"jira.flavour must be auto, cloud or dc, not {flavour!r}")
        if not re.match(r"^https?://[^/\s]+", url or ""):
            raise SettingsError("jira.url (MIM_JIRA_URL) must be an http(s) URL such as https://example.atlassian.net")
        host = urlsplit(url).hostname or ""
        if url.lower().startswith("http://") and not (host in ("localhost", "::1") or host.startswith("127.")):
            # basic auth and tokens would travel in clear text
            raise SettingsError("jira.url (MIM_JIRA_URL) must use https:// (plain http only for 127.0.0.1/localhost)")
        self.base_url = url.rstrip("/")
        self.mapping = mapping
        self.project = project
        self.verify = verify
        self.timeout = timeout
        self.policy = policy or RetryPolicy()
        self._email = email
        self._token = token if isinstance(token, SecretStr) else SecretStr(token)
        self._flavour_setting = flavour
        self._flavour: str | None = None if flavour == "auto" else flavour
        self._session = requests.Session()
        self._session.headers.update({"Accept": "application/json", "User-Agent": "mim-connector"})
        self._sent = 0
        self._disc: dict[str, Any] | None = None
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._keys: dict[str, str] = {}
        self._accounts: dict[str, str] = {}
        self._written: deque[str] = deque(maxlen=MAX_RECONCILE)
        write = mapping.write
        if not isinstance(write, JiraWrite):
            raise SettingsError(f"{mapping.path} is a {mapping.platform} mapping, not a Jira one")
        self._write = write
        self._overlap = write.overlap
        self._page_size = write.page_size

    @classmethod
    def from_settings(cls, settings: JiraSettings, mapping: Mapping, policy: RetryPolicy | None = None) -> "JiraPlatform":
        """Build the adapter from ``[jira]`` settings; :class:`SettingsError` names what is missing
        (never the token)."""
        missing = []
        url, token = settings.url, settings.secret()
        if not url:
            missing.append("jira.url (MIM_JIRA_URL)")
        if token is None or not token.get_secret_value().strip():
            missing.append("jira.token (MIM_JIRA_TOKEN) or jira.token_file")
        if settings.flavour == "cloud" and not settings.email:
            missing.append("jira.email (MIM_JIRA_EMAIL), needed for Jira Cloud basic auth")
        if missing or not url or token is None:
            raise SettingsError("Jira is not configured: missing " + "; ".join(missing))
        return cls(url, settings.email, token, mapping, project=settings.project, flavour=settings.flavour,
                   verify=settings.verify, timeout=settings.timeout, policy=policy)

    def __repr__(self) -> str:
        return f"JiraPlatform({self.base_url!r}, project={self.project!r}, flavour={self._flavour or 'auto'!r})"

    # -- Platform protocol: bookkeeping ------------------------------------------------------------------

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent so far, retries included."""
        return self._sent

    @property
    def flavour(self) -> str | None:
        """``cloud`` or ``dc`` once known (configured, or after discovery)."""
        return self._flavour

    def close(self) -> None:
        """Release connections."""
        self._session.close()

    # -- settings -------------------------------------------------------------------------------------------

    def _fingerprint(self) -> dict[str, Any]:
        """The settings discovery depends on: a cached discovery made under other settings is not reused."""
        names = ("major_field_type", "stage_field_name", "link_type", "issue_type", "review_issue_type",
                 "review_fallback_type", "change_issue_type", "review_link_type", "change_link_type")
        return {"version": DISCOVERY_VERSION, "url": self.base_url, "project": self.project,
                "flavour": self._flavour_setting, **{n: getattr(self._write, n) for n in names}}

    # -- HTTP -------------------------------------------------------------------------------------------------

    def _auth(self) -> AuthBase:
        flavour = self._flavour or ("cloud" if self._email else "dc")
        if flavour == "cloud":
            return HTTPBasicAuth(self._email or "", self._token.get_secret_value())
        return _BearerAuth(self._token)

    def _api(self, path: str) -> str:
        return f"/rest/api/{3 if self._flavour == 'cloud' else 2}{path}"

    def _send(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        """One HTTP request, its answer as JSON (None when empty) or a typed :class:`PlatformError`."""
        self._sent += 1
        try:
            response = self._session.request(method, self.base_url + path, params=params, json=body, auth=self._auth(),
                                             timeout=self.timeout, verify=self.verify, allow_redirects=False)
        except requests.Timeout as exc:
            raise error_from(resolve_exception(exc), f"no answer within {self.timeout:g}s", method=method,
                             path=path) from None
        except requests.ConnectionError as exc:
            raise error_from(resolve_exception(exc), "connection failed", method=method, path=path) from None
        except requests.RequestException as exc:
            raise error_from(resolve_exception(exc), f"request failed ({type(exc).__name__})", method=method,
                             path=path) from None
        return self._read(response, method, path)

    def _read(self, response: requests.Response, method: str, path: str) -> Any:
        status = response.status_code
        where: dict[str, Any] = {"status": status, "method": method, "path": path}
        if 200 <= status < 300:
            if not response.content:
                return None
            ctype = response.headers.get("Content-Type", "")
            if "json" not in ctype.lower():
                raise error_from(RETRY_TABLE[UNREADABLE_2XX],
                                 f"expected JSON, got {ctype.split(';')[0] or 'no content type'}", **where)
            try:
                return response.json()
            except ValueError:
                raise error_from(RETRY_TABLE[UNREADABLE_2XX], "the answer is not valid JSON", **where) from None
        message = _error_message(response)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status in (429, 503):
            reason = response.headers.get("RateLimit-Reason") or response.headers.get("X-RateLimit-Reason")
            log.info("Jira %s on %s %s (reason %s, remaining %s, reset %s, retry after %s)", status, method, path,
                     reason or "-", response.headers.get("X-RateLimit-Remaining", "-"),
                     response.headers.get("X-RateLimit-Reset", "-"), retry_after)
        if status == 401 and not message:
            message = "authentication failed: check the email and API token"
        raise error_for_status(status, message, retry_after=retry_after, method=method, path=path)

    def _call(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None,
              already_done: Callable[[], Any] | None = None) -> Any:
        """A request under the retry policy.

        For writes that are not idempotent (create, comment, transition) ``already_done`` is asked before
        re-sending after an ambiguous failure (timeout, dropped connection, 5xx: the request may have been
        carried out); when it returns a value, that value is the answer. 429 and 503 with ``Retry-After``
        are refusals, so those are re-sent directly.
        """
        ambiguous = False

        def attempt() -> Any:
            nonlocal ambiguous
            if ambiguous and already_done is not None:
                done = already_done()
                if done is not None:
                    return done
            try:
                return self._send(method, path, params, body)
            except PlatformError as exc:
                ambiguous = ambiguous or exc.action is ResponseAction.REREAD
                raise

        return self.policy.call(attempt)

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._call("GET", path, params=params)

    # -- discovery -------------------------------------------------------------------------------------------

    def discover(self, cached: dict[str, Any] | None) -> dict[str, Any]:
        """Site facts: flavour, caller time zone, custom field ids (major incident by schema type, stage by
        name, affected services), link types and issue types. With ``cached`` (made under the same
        settings) no request is sent. Transitions differ per issue and are read at write time."""
        if cached is not None and cached.get("config") == self._fingerprint():
            self._disc = cached
            self._flavour = str(cached["flavour"])
            return cached
        if self._flavour_setting == "auto":
            info = self._get("/rest/api/2/serverInfo") or {}
            self._flavour = "cloud" if str(info.get("deploymentType", "")).lower() == "cloud" else "dc"
            server = {"deployment_type": info.get("deploymentType"), "version": info.get("version"),
                      "server_time_zone": info.get("serverTimeZone")}
        else:
            self._flavour = self._flavour_setting
            server = {}
        me = self._get(self._api("/myself")) or {}
        fields = self._discover_fields(self._get(self._api("/field")) or [])
        link_types = self._discover_link_types((self._get(self._api("/issueLinkType")) or {}).get("issueLinkTypes") or [])
        issue_types = self._discover_issue_types(self._get(self._api("/issuetype")) or [])
        disc: dict[str, Any] = {
            "config": self._fingerprint(),
            "flavour": self._flavour,
            "server": server,
            # Kept for diagnostics: JQL time bounds are epoch milliseconds, which do not depend on it.
            "time_zone": me.get("timeZone"),
            "me": me.get("accountId") if self._flavour == "cloud" else me.get("name"),
            "fields": fields,
            "link_types": link_types,
            "issue_types": issue_types,
        }
        self._disc = disc
        return disc

    def _discover_fields(self, fields: list[dict[str, Any]]) -> dict[str, Any]:
        def describe(item: dict[str, Any] | None) -> dict[str, Any] | None:
            if item is None:
                return None
            schema = item.get("schema") or {}
            number = schema.get("customId")
            if number is None:
                found = re.search(r"(\d+)$", str(item.get("id", "")))
                number = found.group(1) if found else None
            clause = f"cf[{number}]" if number is not None else jql_string(item.get("name", ""))
            return {"id": str(item["id"]), "name": item.get("name"), "clause": clause, "type": schema.get("type")}

        major_type = self._write.major_field_type
        stage_name = (self._write.stage_field_name or "").strip().lower()
        major = next((f for f in fields if major_type and (f.get("schema") or {}).get("custom") == major_type), None)
        stage = next((f for f in fields if f.get("custom") and stage_name
                      and str(f.get("name", "")).strip().lower() == stage_name), None)
        services = next((f for f in fields if (f.get("schema") or {}).get("custom") == SERVICES_FIELD_TYPE), None)
        return {"major": describe(major), "stage": describe(stage), "services": describe(services),
                "duedate": any(f.get("id") == "duedate" for f in fields)}

    def _discover_link_types(self, link_types: list[dict[str, Any]]) -> dict[str, Any]:
        by_name = {str(t.get("name", "")).lower(): t for t in link_types}

        def pick(name: str) -> dict[str, Any] | None:
            found = by_name.get(name.lower())
            if found is None:
                return None
            return {k: str(found.get(k, "")) for k in ("id", "name", "inward", "outward")}

        wanted = self._write.link_type
        child = pick(wanted)
        if child is None:
            available = ", ".join(sorted(str(t.get("name")) for t in link_types))
            raise SettingsError(f"link type {wanted!r} (write.link_type in mappings/jira.yaml) does not exist on "
                                     f"{self.base_url}; available: {available}")
        relates = pick("Relates") or child
        review = pick(self._write.review_link_type) or relates
        change = pick(self._write.change_link_type) or relates
        return {"child": child, "review": review, "change": change}

    def _discover_issue_types(self, issue_types: list[dict[str, Any]]) -> dict[str, Any]:
        by_name: dict[str, dict[str, Any]] = {}
        for item in issue_types:
            name = str(item.get("name", ""))
            by_name.setdefault(name.lower(), item)
            # Cloud ITSM templates name them "[System] Incident" and so on.
            by_name.setdefault(re.sub(r"^\[system\]\s*", "", name.lower()), item)

        def pick(*names: Any) -> dict[str, str] | None:
            for name in names:
                if not name:
                    continue
                found = by_name.get(str(name).lower())
                if found is not None:
                    return {"id": str(found.get("id")), "name": str(found.get("name"))}
            return None

        return {"incident": pick(self._write.issue_type),
                "review": pick(self._write.review_issue_type, self._write.review_fallback_type),
                "change": pick(self._write.change_issue_type)}

    def _discovery(self) -> dict[str, Any]:
        return self._disc if self._disc is not None else self.discover(None)

    def _field(self, role: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = (self._disc or {}).get("fields", {}).get(role)
        return found

    # -- reading ---------------------------------------------------------------------------------------------

    def _fields_wanted(self) -> list[str]:
        wanted = [f for f in self.mapping.platform_fields() if f not in ("id", "key") and not f.startswith("_")]
        for extra in ("summary", "status", "issuetype", "created", "updated", "labels", "issuelinks"):
            if extra not in wanted:
                wanted.append(extra)
        for role in ("major", "stage", "services"):
            found = self._field(role)
            if found and found["id"] not in wanted:
                wanted.append(found["id"])
        return wanted

    def _property_key(self) -> str:
        return self._write.property_key

    def _project_clause(self) -> str:
        return f"project = {jql_string(self.project)}"

    def _scope_clause(self) -> str:
        """Project and, once known, the incident issue type: review tasks, changes and service requests
        share the project but are not tickets a surge is made of (ServiceNow polls the incident table)."""
        incident = ((self._disc or {}).get("issue_types") or {}).get("incident")
        if not incident:
            return self._project_clause()
        ident = str(incident["id"])
        return f"{self._project_clause()} AND issuetype = {ident if ident.isdigit() else jql_string(incident['name'])}"

    def changed_jql(self, start: datetime | int) -> str:
        """The delta-poll JQL from ``start`` (epoch milliseconds, unquoted: zone-free and exact)."""
        ms = start if isinstance(start, int) else jql_epoch_ms(start)
        return f"{self._scope_clause()} AND updated >= {ms} ORDER BY updated ASC, key ASC"

    def fetch_changed(self, since: Watermark | None, horizon: datetime) -> Iterator[dict[str, Any]]:
        """Issues updated since the watermark minus the overlap (or since ``horizon``), oldest first, every
        page, de-duplicated by ``(id, fields.updated)``. A quiet poll is one request."""
        self._discovery()
        start = since.updated_at - self._overlap if since is not None else horizon
        fields = self._fields_wanted()
        props = [self._property_key()]
        # Issues we just wrote: Cloud search is eventually consistent, reconcileIssues makes them current.
        reconcile = [i for i in self._written if i.isdigit()] if self._flavour == "cloud" else []
        if self._flavour == "cloud":
            pages = self._search_cloud(self.changed_jql(start), fields, props, reconcile)
        else:
            pages = self._changed_dc(start, fields, props)
        seen: set[tuple[str, Any]] = set()
        for issue in pages:
            ident = (str(issue.get("id")), (issue.get("fields") or {}).get("updated"))
            if ident in seen:
                continue
            seen.add(ident)
            self._remember(issue)
            yield issue
        self._written.clear()

    def _search_cloud(self, jql: str, fields: list[str], properties: list[str],
                      reconcile: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
        """``POST /rest/api/3/search/jql`` following ``nextPageToken`` until it is absent or ``isLast``."""
        path = "/rest/api/3/search/jql"
        paginator = TokenPaginator(where=f"POST {path}", source="Jira", field="nextPageToken", retryable=True)

        def fetch(token: str | None) -> Page:
            body: dict[str, Any] = {"jql": jql, "maxResults": min(self._page_size, 100), "fields": fields}
            if properties:
                body["properties"] = properties
            if reconcile:
                body["reconcileIssues"] = [int(i) for i in reconcile]
            if token:
                body["nextPageToken"] = token
            page = self._call("POST", path, body=body) or {}
            return Page(page.get("issues") or [], token=page.get("nextPageToken"), last=page.get("isLast") is True)

        for page in paginate(paginator, fetch):
            yield from page.rows

    def _search_dc(self, jql: str, fields: list[str], properties: list[str]) -> Iterator[dict[str, Any]]:
        """``POST /rest/api/2/search`` with ``startAt`` (small, stable result sets only)."""
        path = "/rest/api/2/search"
        paginator = OffsetPaginator(_issue_id, where=f"POST {path}", retryable=True)

        def fetch(start: int) -> Page:
            body: dict[str, Any] = {"jql": jql, "startAt": start, "maxResults": self._page_size, "fields": fields}
            if properties:
                body["properties"] = properties
            return _offset_page(self._call("POST", path, body=body), "issues")

        for page in paginate(paginator, fetch):
            yield from page.rows

    def _changed_dc(self, start: datetime, fields: list[str], properties: list[str]) -> Iterator[dict[str, Any]]:
        """Data Center delta pages (a :class:`_ChangedPaginator`): each page restarts the query from the last
        ``updated`` seen; ``startAt`` only steps through issues sharing that one millisecond."""
        path = "/rest/api/2/search"
        paginator = _ChangedPaginator(jql_epoch_ms(start), where=f"POST {path}")

        def fetch(position: tuple[int, int]) -> Page:
            cursor, offset = position
            body: dict[str, Any] = {"jql": self.changed_jql(cursor), "startAt": offset, "maxResults": self._page_size,
                                    "fields": fields, "properties": properties}
            return _offset_page(self._call("POST", path, body=body), "issues")

        for page in paginate(paginator, fetch):
            yield from page.rows

    def search(self, jql: str, fields: list[str] | None = None) -> list[dict[str, Any]]:
        """Every issue matching ``jql`` (built with :func:`jql_string` for values), with the ``mim`` property."""
        self._discovery()
        wanted = fields or self._fields_wanted()
        props = [self._property_key()]
        pages = self._search_cloud(jql, wanted, props) if self._flavour == "cloud" else self._search_dc(jql, wanted, props)
        found = []
        for issue in pages:
            self._remember(issue)
            found.append(issue)
        return found

    def fetch_marked(self) -> list[dict[str, Any]]:
        """Open issues flagged as major incidents whose ``mim`` property carries our marker (state rebuild),
        including those a human un-flagged (they still carry the ``declared_label``)."""
        self._discovery()
        flags = [f"labels = {jql_string(self._write.major_label)}",
                 f"labels = {jql_string(self._write.declared_label)}"]
        major = self._field("major")
        if major:
            flags.append(f"{major['clause']} IS NOT EMPTY")
        jql = (f"{self._project_clause()} AND ({' OR '.join(flags)}) AND statusCategory != {jql_string('Done')} "
               "ORDER BY key ASC")
        return [issue for issue in self.search(jql)
                if str(self._property(issue).get("marker") or "").startswith("mim:")]

    def fetch_followups(self, mi_ids: Sequence[str],
                        changes: dict[str, str | None] | None = None) -> dict[str, dict[str, Any]]:
        """The change and review issues linked to each major incident, from one search of the major incidents
        themselves (``id IN (...)``, field ``issuelinks``: every link carries the other issue's type, summary
        and status). ``changes`` is not needed here: the links name the change."""
        disc = self._discovery()
        numeric = list(dict.fromkeys(str(i) for i in mi_ids if str(i).isdigit()))
        out: dict[str, dict[str, Any]] = {str(i): {"change": None, "tasks": []} for i in mi_ids}
        link_types = disc.get("link_types") or {}
        issue_types = disc.get("issue_types") or {}
        for i in range(0, len(numeric), MAX_RECONCILE):
            chunk = numeric[i:i + MAX_RECONCILE]
            jql = f"{self._project_clause()} AND id IN ({', '.join(chunk)}) ORDER BY key ASC"
            if self._flavour == "cloud":
                pages = self._search_cloud(jql, ["issuelinks"], [], chunk)
            else:
                pages = self._search_dc(jql, ["issuelinks"], [])
            for issue in pages:
                entry = out.setdefault(str(issue.get("id")), {"change": None, "tasks": []})
                seen: set[str] = set()
                for link in (issue.get("fields") or {}).get("issuelinks") or []:
                    other = link.get("outwardIssue") or link.get("inwardIssue") or {}
                    ident = str(other.get("id") or "")
                    if not ident or ident in seen:
                        continue
                    fields = other.get("fields") or {}
                    kind = next((k for k in ("change", "review")
                                 if link_types.get(k) and issue_types.get(k)
                                 and _same_link_type(link, link_types[k])
                                 and _same_issue_type(fields.get("issuetype") or {}, issue_types[k])), None)
                    if kind is None:
                        continue
                    seen.add(ident)
                    item = {"id": ident, "key": other.get("key"), "state": self._state_of(fields.get("status"))}
                    if kind == "change":
                        entry["change"] = entry["change"] or item
                    else:
                        entry["tasks"].append({**item, "title": str(fields.get("summary") or "")})
                entry["tasks"].sort(key=lambda t: (len(str(t["key"] or "")), str(t["key"] or ""), t["id"]))
        return out

    def _state_of(self, status: Any) -> str:
        """A status as a canonical state through the mapping's ``state`` values: the name first, else its
        category."""
        if not isinstance(status, dict):
            return "unknown"
        table = {str(k): str(v) for k, v in (self.mapping.spec.values.get("state") or {}).items()}
        name = str(status.get("name") or "")
        category = str((status.get("statusCategory") or {}).get("key") or "")
        return table.get(name) or table.get(category) or "unknown"

    def _remember(self, issue: dict[str, Any]) -> None:
        ident = str(issue.get("id", ""))
        if not ident:
            return
        if issue.get("key"):
            self._keys[ident] = str(issue["key"])
        self._cache[ident] = issue
        self._cache.move_to_end(ident)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    def _forget(self, issue_id: str) -> None:
        """After a write the remembered copy is stale; the issue is also reconciled on the next poll."""
        self._cache.pop(issue_id, None)
        self._written.append(issue_id)

    # -- mapping -----------------------------------------------------------------------------------------------

    def _property(self, issue: dict[str, Any]) -> dict[str, Any]:
        value = (issue.get("properties") or {}).get(self._property_key())
        return value if isinstance(value, dict) else {}

    def _is_flagged(self, fields: dict[str, Any], labels: list[str]) -> bool:
        major = self._field("major")
        if major and _flag_on(fields.get(major["id"])):
            return True
        return self._write.major_label in labels

    def derived_fields(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The ``_``-prefixed keys the mapping reads: ``_major`` (none / proposed / accepted / rejected),
        ``_parent`` (issue id of the major incident this issue is linked to), ``_stage``, ``_marker``,
        ``_change`` (the linked change issue) and ``_ci`` (first affected service, when the site has that
        field)."""
        fields = raw.get("fields") or {}
        labels = [str(label) for label in fields.get("labels") or []]
        prop = self._property(raw)
        out: dict[str, Any] = {}
        if self._is_flagged(fields, labels):
            out["_major"] = "proposed" if self._write.proposed_label in labels else "accepted"
        elif prop.get("declared") is True or self._write.declared_label in labels:
            out["_major"] = "rejected"  # we declared it and a human took the flag away
        else:
            out["_major"] = "none"
        parent = self._parent_of(fields)
        if parent:
            out["_parent"] = parent
        stage = self._stage_of(fields, labels)
        if stage:
            out["_stage"] = stage
        change = self._change_of(fields)
        if change:
            out["_change"] = change
        if isinstance(prop.get("marker"), str):
            out["_marker"] = prop["marker"]
        services = self._field("services")
        if services:
            ci = _first_name(fields.get(services["id"]))
            if ci:
                out["_ci"] = ci
        return out

    def _parent_of(self, fields: dict[str, Any]) -> str | None:
        link_type = ((self._disc or {}).get("link_types") or {}).get("child")
        if not link_type:
            return None
        incident = ((self._disc or {}).get("issue_types") or {}).get("incident") or {}
        for link in fields.get("issuelinks") or []:
            if not _same_link_type(link, link_type):
                continue
            # Seen from the child, "MAJOR causes CHILD" shows the major incident as inwardIssue.
            other = link.get("inwardIssue")
            if not isinstance(other, dict) or not other.get("id"):
                continue
            # A Problem also "causes" incidents: only an issue of the incident type is a major incident.
            other_type = ((other.get("fields") or {}).get("issuetype") or {})
            if other_type and incident and str(other_type.get("id")) != incident.get("id") \
                    and str(other_type.get("name", "")).lower() != str(incident.get("name", "")).lower():
                continue
            return str(other["id"])
        return None

    def _change_of(self, fields: dict[str, Any]) -> str | None:
        """The change issue linked to this (major) incident with the change link type, if any."""
        disc = self._disc or {}
        link_type = (disc.get("link_types") or {}).get("change")
        change_type = (disc.get("issue_types") or {}).get("change")
        if not link_type or not change_type:
            return None
        for link in fields.get("issuelinks") or []:
            if not _same_link_type(link, link_type):
                continue
            other = link.get("outwardIssue") or link.get("inwardIssue") or {}
            other_type = (other.get("fields") or {}).get("issuetype") or {}
            if other.get("id") and (str(other_type.get("id")) == change_type["id"]
                                    or str(other_type.get("name", "")).lower() == change_type["name"].lower()):
                return str(other["id"])
        return None

    def _stage_of(self, fields: dict[str, Any], labels: list[str]) -> str | None:
        stage_field = self._field("stage")
        if stage_field:
            value = _first_name(fields.get(stage_field["id"]))
            if value and value.lower() in STAGE_ORDER:
                return value.lower()
        prefix = self._write.stage_label_prefix
        found = [label[len(prefix):].lower() for label in labels if label.startswith(prefix)]
        known = [s for s in found if s in STAGE_ORDER]
        return max(known, key=STAGE_ORDER.index) if known else None

    def to_ticket(self, raw: dict[str, Any]) -> Ticket:
        """A raw issue as a canonical ticket: rich text (Cloud ADF) as plain text, derived keys, then the
        mapping."""
        record = dict(raw)
        fields = raw.get("fields")
        if isinstance(fields, dict) and any(_is_adf(v) for v in fields.values()):
            record["fields"] = {k: adf_plain_text(v) if _is_adf(v) else v for k, v in fields.items()}
        record.update(self.derived_fields(raw))
        return self.mapping.to_ticket(record, base_url=self.base_url)

    # -- mim doctor ---------------------------------------------------------------------------------------------

    PERMISSIONS = ("BROWSE_PROJECTS", "CREATE_ISSUES", "EDIT_ISSUES", "LINK_ISSUES", "ADD_COMMENTS",
                   "TRANSITION_ISSUES", "ASSIGN_ISSUES")
    """Project permissions the write-back needs."""

    def doctor_checks(self, discovery: dict[str, Any]) -> list[tuple[str, bool, str, str]]:
        """Read-only checks for ``mim doctor``: the project, the permissions the write-back needs, every
        mapped field, the major incident and stage fields, the link type and the issue types."""
        checks: list[tuple[str, bool, str, str]] = []
        self._disc = self._disc or discovery or None
        disc = self._discovery()
        checks.append(doctor_check(f"project {self.project}", self._check_project,
                                   "set MIM_JIRA_PROJECT to a project key the integration user can browse"))
        checks.append(doctor_check("permissions", self._check_permissions,
                                   "grant the integration user these project permissions"))
        checks.append(doctor_check("mapped fields", self._check_fields,
                                   "fix mappings/jira.yaml or add the field to the project's screens"))
        major = disc["fields"].get("major")
        checks.append(("major incident field", True,
                       f"{major['name']} ({major['id']})" if major else
                       f"none on this site: the label {self._write.major_label!r} marks major "
                       "incidents", ""))
        stage = disc["fields"].get("stage")
        checks.append(("stage field", True, f"{stage['name']} ({stage['id']})" if stage else
                       f"none: stages are labels {self._write.stage_label_prefix}<stage>",
                       "" if stage else f"add a text field named {self._write.stage_field_name!r} to see the "
                                        "stage as a field"))
        child = disc["link_types"]["child"]
        checks.append(("link type", True, f"{child['name']}: major incident {child['outward']} child", ""))
        for role, setting in (("incident", "issue_type"), ("review", "review_issue_type"), ("change", "change_issue_type")):
            found = disc["issue_types"].get(role)
            checks.append((f"issue type {role}", found is not None,
                           f"{found['name']} ({found['id']})" if found else f"{getattr(self._write, setting)!r} not found",
                           "" if found else f"add the issue type to the project or set write.{setting}"))
        return checks

    def _check_project(self) -> str:
        project = self._get(self._api(f"/project/{self.project}")) or {}
        return f"{project.get('name', self.project)} is readable"

    def _check_permissions(self) -> str:
        try:
            answer = self._get(self._api("/mypermissions"), {"projectKey": self.project,
                                                             "permissions": ",".join(self.PERMISSIONS)}) or {}
        except NotFound:
            return "not checked (this server has no /mypermissions)"
        granted = answer.get("permissions") or {}
        missing = [p for p in self.PERMISSIONS if not (granted.get(p) or {}).get("havePermission")]
        if missing:
            raise PermissionDenied(f"missing {', '.join(missing)} in {self.project}")
        return "all granted: " + ", ".join(self.PERMISSIONS)

    def _check_fields(self) -> str:
        known = {str(f.get("id")) for f in self._get(self._api("/field")) or []}
        wanted = [f for f in self._fields_wanted() if f not in ("issuelinks",)]
        missing = [f for f in wanted if f not in known]
        if missing:
            raise ClientError(f"no field {', '.join(missing)}")
        return f"{len(wanted)} fields found"

    # -- writing: building blocks ---------------------------------------------------------------------------

    def _text(self, text: str) -> Any:
        return adf_document(text) if self._flavour == "cloud" else text

    def _comment_body(self, text: str, internal: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"body": self._text(text)}
        if internal and self._write.internal_comments:
            body["properties"] = [{"key": INTERNAL_COMMENT_PROPERTY, "value": {"internal": True}}]
        return body

    def _state_fields(self) -> list[str]:
        wanted = ["summary", "status", "issuetype", "priority", "labels", "issuelinks", "updated"]
        for role in ("major", "stage"):
            found = self._field(role)
            if found:
                wanted.append(found["id"])
        return wanted

    def _current(self, issue_id: str, fresh: bool) -> dict[str, Any]:
        """The issue as last read in this run, or read now (``fresh``, or never seen)."""
        if not fresh and issue_id in self._cache:
            return self._cache[issue_id]
        issue = self._get(self._api(f"/issue/{issue_id}"), {"fields": ",".join(self._state_fields()),
                                                            "properties": self._property_key()}) or {}
        self._remember(issue)
        return issue

    def _key_of(self, issue_id: str) -> str | None:
        return self._keys.get(issue_id)

    def _edit(self, issue_id: str, body: dict[str, Any]) -> None:
        self._call("PUT", self._api(f"/issue/{issue_id}"), body=body)
        self._forget(issue_id)

    def _set_property(self, issue_id: str, value: dict[str, Any]) -> None:
        self._call("PUT", self._api(f"/issue/{issue_id}/properties/{self._property_key()}"), body=value)
        self._forget(issue_id)

    def _user_ref(self, user: str) -> dict[str, str]:
        """How a REST body names ``user``: Data Center by ``name``; Cloud by ``accountId``, looking one up
        (``/user/search``) when the process file names a person by email, user name or display name."""
        if self._flavour != "cloud":
            return {"name": user}
        if ACCOUNT_ID.match(user):
            return {"accountId": user}
        if user not in self._accounts:
            path = self._api("/user/search")
            found = [u for u in self._get(path, {"query": user, "maxResults": 10}) or [] if u.get("accountId")]
            wanted = user.strip().lower()

            def names(u: dict[str, Any]) -> set[str]:
                email = str(u.get("emailAddress") or "").lower()
                return {email, email.split("@")[0], str(u.get("displayName") or "").lower(),
                        str(u.get("name") or "").lower()} - {""}

            exact = [u for u in found if wanted in names(u)]
            chosen = exact or found
            if len(chosen) != 1:
                raise ClientError(f"{'no' if not chosen else len(chosen)} Jira users match {user!r}: name people in the "
                                  "process file by Jira account id or email", method="GET", path=path)
            self._accounts[user] = str(chosen[0]["accountId"])
        return {"accountId": self._accounts[user]}

    def _assign(self, issue_id: str, user: str) -> None:
        self._call("PUT", self._api(f"/issue/{issue_id}/assignee"), body=self._user_ref(user))
        self._forget(issue_id)

    def _comment_tagged(self, issue_id: str, tag: str, once: bool = False) -> bool:
        """Whether a comment on the issue already carries ``[tag]`` (newest first, every page)."""
        needle = f"[{tag}]"
        path = self._api(f"/issue/{issue_id}/comment")
        paginator = OffsetPaginator(lambda comment: str(comment.get("id")), where=f"GET {path}", retryable=True)

        def fetch(start: int) -> Page:
            params = {"startAt": start, "maxResults": 100, "orderBy": "-created"}
            return _offset_page(self._send("GET", path, params) if once else self._get(path, params), "comments")

        return any(needle in adf_plain_text(c.get("body")) for page in paginate(paginator, fetch) for c in page.rows)

    def _add_comment(self, issue_id: str, text: str, tag: str, internal: bool) -> None:
        body = self._comment_body(f"{text}\n[{tag}]", internal)
        self._call("POST", self._api(f"/issue/{issue_id}/comment"), body=body,
                   already_done=lambda: True if self._comment_tagged(issue_id, tag, once=True) else None)
        self._forget(issue_id)

    def _find_tagged(self, tag: str, once: bool = False) -> dict[str, Any] | None:
        """The issue carrying label ``tag`` (a record the connector created for one action), if any."""
        jql = f"{self._project_clause()} AND labels = {jql_string(tag)} ORDER BY key ASC"
        fields = ["summary", "labels", "issuelinks", "issuetype", "status"]
        if once:
            path = "/rest/api/3/search/jql" if self._flavour == "cloud" else "/rest/api/2/search"
            body: dict[str, Any] = {"jql": jql, "maxResults": 1, "fields": fields}
            issues = (self._send("POST", path, body=body) or {}).get("issues") or []
            return issues[0] if issues else None
        found = self.search(jql, fields)
        return found[0] if found else None

    def _create_issue(self, fields: dict[str, Any], tag: str, prop: dict[str, Any]) -> tuple[str, str]:
        fields = {**fields, "labels": sorted(set(fields.get("labels", [])) | {tag})}
        body = {"fields": fields, "properties": [{"key": self._property_key(), "value": prop}]}
        created = self._call("POST", self._api("/issue"), body=body,
                             already_done=lambda: self._find_tagged(tag, once=True)) or {}
        issue_id, key = str(created.get("id", "")), str(created.get("key", ""))
        if not issue_id:
            raise UnexpectedResponse("issue created without an id in the answer", method="POST", path=self._api("/issue"))
        self._keys[issue_id] = key
        self._written.append(issue_id)
        return issue_id, key

    def _link(self, link_type: dict[str, Any], inward_id: str, outward_id: str) -> None:
        """``inward`` <outward phrase> ``outward`` (e.g. MAJOR causes CHILD): ``inwardIssue`` is the subject."""
        self._call("POST", self._api("/issueLink"), body={"type": {"name": link_type["name"]},
                                                         "inwardIssue": {"id": inward_id},
                                                         "outwardIssue": {"id": outward_id}})
        self._forget(inward_id)
        self._forget(outward_id)

    @staticmethod
    def _has_link(issue: dict[str, Any], link_type: dict[str, Any], other_id: str, side: str) -> bool:
        return any(_same_link_type(link, link_type) and str((link.get(side) or {}).get("id")) == other_id
                   for link in (issue.get("fields") or {}).get("issuelinks") or [])

    def _transition(self, issue_id: str, status: str, comment: dict[str, Any] | None = None,
                    properties: list[dict[str, Any]] | None = None) -> None:
        """Move the issue to the status named ``status`` through whichever transition leads there now."""
        path = self._api(f"/issue/{issue_id}/transitions")
        available = (self._get(path, {"expand": "transitions.fields"}) or {}).get("transitions") or []
        wanted = status.strip().lower()
        chosen = next((t for t in available if str((t.get("to") or {}).get("name", "")).lower() == wanted), None)
        if chosen is None:
            chosen = next((t for t in available if str(t.get("name", "")).lower() == wanted), None)
        if chosen is None:
            names = ", ".join(sorted({str((t.get("to") or {}).get("name")) for t in available})) or "none"
            raise ClientError(f"no transition to status {status!r} from the issue's current status (reachable: {names})",
                              method="POST", path=path)
        body: dict[str, Any] = {"transition": {"id": str(chosen["id"])}}
        resolution = (chosen.get("fields") or {}).get("resolution")
        if isinstance(resolution, dict) and resolution.get("required"):
            body["fields"] = {"resolution": {"name": self._write.resolution}}
        if comment is not None:
            body["update"] = {"comment": [{"add": comment}]}
        if properties:
            body["properties"] = properties

        def done() -> Any:
            issue = self._send("GET", self._api(f"/issue/{issue_id}"), {"fields": "status"}) or {}
            name = str(((issue.get("fields") or {}).get("status") or {}).get("name", "")).lower()
            return True if name == wanted else None

        self._call("POST", path, body=body, already_done=done)
        self._forget(issue_id)

    def _status_for(self, state: str) -> str:
        table = {**DEFAULT_STATE_STATUSES, "resolved": self._write.resolve_status}
        for canonical, status in self._write.state_statuses.items():
            table[canonical] = status
        return table.get(state, state)

    def _field_changes(self, canonical: dict[str, Any], current: dict[str, Any] | None
                       ) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        """Canonical fields as Jira ``fields`` (only what differs from ``current``), the separate writes
        (``assignee``, ``state``) and the canonical names Jira has no field for."""
        now = (current or {}).get("fields") or {}
        fields: dict[str, Any] = {}
        separate: dict[str, Any] = {}
        unwritable: list[str] = []
        for name, value in canonical.items():
            if value is None:
                continue
            if name == "priority":
                jira = str(self.mapping.to_platform("priority", value))
                if str((now.get("priority") or {}).get("name", "")) != jira:
                    fields["priority"] = {"name": jira}
            elif name == "title":
                if now.get("summary") != str(value)[:255]:
                    fields["summary"] = str(value)[:255]
            elif name == "description":
                fields["description"] = self._text(str(value))
            elif name == "service":
                if _first_name(now.get("components")) != str(value):
                    fields["components"] = [{"name": str(value)}]
            elif name in ("assignee", "state"):
                separate[name] = value
            elif name == "stage":
                continue  # SetStage writes it
            else:
                unwritable.append(name)
        return fields, separate, unwritable

    def _declare(self, issue_id: str, mode: str, marker: str, extra: dict[str, Any], tag: str, rule: str | None,
                 fresh: bool) -> tuple[Literal["applied", "skipped"], str]:
        """Flag ``issue_id`` as a major incident (field where the site has one, else label); returns
        ``(status, detail)``. A major incident a human un-flagged is left alone."""
        issue = self._current(issue_id, fresh)
        fields_now = issue.get("fields") or {}
        labels = [str(label) for label in fields_now.get("labels") or []]
        derived = self.derived_fields(issue)
        if derived["_major"] == "rejected":
            return "skipped", "a human removed the major incident flag; not declared again"
        fields, separate, unwritable = self._field_changes(extra, issue)
        add: list[str] = []
        major = self._field("major")
        if major:
            if not _flag_on(fields_now.get(major["id"])):
                fields[major["id"]] = MAJOR_INCIDENT_VALUE
        elif self._write.major_label not in labels:
            add.append(self._write.major_label)
        proposed = self._write.proposed_label
        if mode == "propose" and derived["_major"] != "accepted" and proposed not in labels:
            add.append(proposed)
        declared_label = self._write.declared_label
        if declared_label not in labels:
            add.append(declared_label)
        old = self._property(issue)
        prop = {**old, "marker": marker, "declared": True, "mode": mode, "rule": rule, "declared_by": tag}
        body: dict[str, Any] = {}
        if fields:
            body["fields"] = fields
        if add:
            body["update"] = {"labels": [{"add": label} for label in add]}
        if prop != old:
            body["properties"] = [{"key": self._property_key(), "value": prop}]
        wrote = bool(body)
        if body:
            self._edit(issue_id, body)
        if separate.get("assignee"):
            self._assign(issue_id, str(separate["assignee"]))
            wrote = True
        if separate.get("state"):
            self._transition(issue_id, self._status_for(str(separate["state"])))
            wrote = True
        detail = f"not written (no Jira field): {', '.join(unwritable)}" if unwritable else ""
        return ("applied" if wrote else "skipped"), detail or ("" if wrote else "already declared")

    # -- writing: actions ------------------------------------------------------------------------------------

    def apply(self, actions: Sequence[Action], resolve: Resolver,
              uncertain: frozenset[str] = frozenset()) -> list[ApplyResult]:
        """Perform ``actions`` in order, one request at a time (so writes to one issue never overlap), and
        report each. ``uncertain`` actions read the platform first and skip what is already there."""
        self._discovery()
        ctx = _ApplyContext(resolve)
        handlers: dict[type, Callable[[Any, _ApplyContext, bool], ApplyResult]] = {
            DeclareMajor: self._apply_declare, CreateParent: self._apply_create_parent, LinkChild: self._apply_link,
            AddNote: self._apply_note, SetFields: self._apply_fields, SetStage: self._apply_stage,
            CreateTask: self._apply_task, CreateChange: self._apply_change, ResolveChild: self._apply_resolve,
        }
        results: list[ApplyResult] = []
        for action in actions:
            handler = handlers.get(type(action))
            if isinstance(action, Notify):
                result = ApplyResult(action.key, "skipped", detail="not a platform write", retryable=False)
            elif handler is None:
                result = ApplyResult(action.key, "failed", detail=f"unsupported action {type(action).__name__}",
                                     retryable=False)
            else:
                try:
                    result = handler(action, ctx, action.key in uncertain)
                except _Dependency as exc:
                    result = ApplyResult(action.key, "failed", detail=str(exc), retryable=True)
                except PlatformError as exc:
                    result = ApplyResult(action.key, "failed", detail=str(exc), retryable=exc.retryable)
            if isinstance(action, CreateParent):
                if result.status != "failed" and result.created_id:
                    ctx.created[action.target] = result.created_id
                else:
                    ctx.failed[action.target] = action.key
            results.append(result)
        return results

    def _apply_declare(self, action: DeclareMajor, ctx: _ApplyContext, uncertain: bool) -> ApplyResult:
        issue_id = ctx.issue_id(action.target)
        status, detail = self._declare(issue_id, action.mode, action.marker, action.fields, marker_tag(action.key),
                                       action.rule, fresh=uncertain)
        return ApplyResult(action.key, status, detail=detail)

    def _apply_create_parent(self, action: CreateParent, ctx: _ApplyContext, uncertain: bool) -> ApplyResult:
        tag = marker_tag(action.key)
        found = self._find_tagged(tag) if uncertain else None
        if found is not None:
            issue_id, key = str(found["id"]), str(found.get("key", ""))
            status, detail = self._declare(issue_id, action.mode, action.marker, {}, tag, action.rule, fresh=True)
            return ApplyResult(action.key, status, created_id=issue_id, created_key=key,
                               detail=f"found {key}, created earlier" + (f"; {detail}" if detail else ""))
        incident = (self._discovery().get("issue_types") or {}).get("incident")
        if not incident:
            return ApplyResult(action.key, "failed", retryable=False,
                               detail=f"issue type {self._write.issue_type!r} does not exist on the site")
        fields, separate, unwritable = self._field_changes(action.fields, None)
        fields.setdefault("summary", "Major incident")
        fields.update({"project": {"key": self.project}, "issuetype": {"id": incident["id"]}})
        # Not "declared" yet: a crash before the flag is set must not read back as a human rejection.
        prop = {"marker": action.marker, "rule": action.rule, "created_by": tag}
        issue_id, key = self._create_issue(fields, tag, prop)
        try:
            status, detail = self._declare(issue_id, action.mode, action.marker,
                                           {k: v for k, v in separate.items() if k == "assignee"}, tag, action.rule,
                                           fresh=True)
        except PlatformError as exc:
            # Keep the id in the ledger: the re-drive finds the issue by its tag and flags it then.
            return ApplyResult(action.key, "failed", created_id=issue_id, created_key=key, retryable=exc.retryable,
                               detail=f"created {key} but could not flag it: {exc}")
        notes = [f"created {key}"] + ([detail] if detail else [])
        if unwritable:
            notes.append(f"not written (no Jira field): {', '.join(unwritable)}")
        return ApplyResult(action.key, "applied", created_id=issue_id, created_key=key, detail="; ".join(notes))

    def _apply_link(self, action: LinkChild, ctx: _ApplyContext, uncertain: bool) -> ApplyResult:
        child_id = ctx.issue_id(action.target)
        parent_id = ctx.issue_id(action.parent)
        link_type = self._discovery()["link_types"]["child"]
        child = self._current(child_id, fresh=uncertain)
        if self._has_link(child, link_type, parent_id, "inwardIssue"):
            return ApplyResult(action.key, "skipped", detail="already linked")
        self._link(link_type, parent_id, child_id)
        old = self._property(child)
        prop = {**old, "parent": parent_id, "parent_key": self._key_of(parent_id), "rule": action.rule,
                "linked_by": marker_tag(action.key)}
        self._set_property(child_id, prop)
        parent, linked = self._key_of(parent_id) or parent_id, self._key_of(child_id) or child_id
        return ApplyResult(action.key, "applied", detail=f"{parent} {link_type['outward']} {linked}")

    def _apply_note(self, action: AddNote, ctx: _ApplyContext, uncertain: bool) -> ApplyResult:
        issue_id = ctx.issue_id(action.target)
        tag = marker_tag(action.key)
        if uncertain and self._comment_tagged(issue_id, tag):
            return ApplyResult(action.key, "skipped", detail="comment already there")
        self._add_comment(issue_id, action.text, tag, action.internal)
        return ApplyResult(action.key, "applied")

    def _apply_fields(self, action: SetFields, ctx: _ApplyContext, uncertain: bool) -> ApplyResult:
        issue_id = ctx.issue_id(action.target)
        current = self._current(issue_id, fresh=True) if uncertain else self._cache.get(issue_id)
        fields, separate, unwritable = self._field_changes(action.fields, current)
        wrote: list[str] = []
        if fields:
            self._edit(issue_id, {"fields": fields})
            wrote.extend(fields)
        if separate.get("assignee"):
            self._assign(issue_id, str(separate["assignee"]))
            wrote.append("assignee")
        if separate.get("state"):
            status = self._status_for(str(separate["state"]))
            now = str((((current or {}).get("fields") or {}).get("status") or {}).get("name", "")).lower()
            if now != status.lower():
                self._transition(issue_id, status)
                wrote.append(f"status {status}")
        detail = f"not written (no Jira field): {', '.join(unwritable)}" if unwritable else ""
        if not wrote:
            return ApplyResult(action.key, "skipped", detail=detail or "already set", retryable=False)
        return ApplyResult(action.key, "applied", detail=detail)

    def _apply_stage(self, action: SetStage, ctx: _ApplyContext, uncertain: bool) -> ApplyResult:
        issue_id = ctx.issue_id(action.target)
        current = self._current(issue_id, fresh=True) if uncertain else self._cache.get(issue_id)
        stage = str(action.stage).lower()
        stage_field = self._field("stage")
        if current is not None:
            fields_now = current.get("fields") or {}
            labels = [str(label) for label in fields_now.get("labels") or []]
            if stage_field:
                if (_first_name(fields_now.get(stage_field["id"])) or "").lower() == stage:
                    return ApplyResult(action.key, "skipped", detail="stage already set")
            elif self._stage_of(fields_now, labels) == stage:
                return ApplyResult(action.key, "skipped", detail="stage already set")
        if stage_field:
            value: Any = stage.capitalize()
            if stage_field.get("type") == "option":
                value = {"value": value}
            self._edit(issue_id, {"fields": {stage_field["id"]: value}})
        else:
            prefix = self._write.stage_label_prefix
            ops: list[dict[str, str]] = [{"remove": prefix + other} for other in STAGE_ORDER if other != stage]
            ops.append({"add": prefix + stage})
            self._edit(issue_id, {"update": {"labels": ops}})
        return ApplyResult(action.key, "applied")

    def _create_linked(self, action: Action, ctx: _ApplyContext, uncertain: bool, kind: str, summary: str,
                       description: str, owner: str | None = None, due: datetime | None = None) -> ApplyResult:
        """A review task or change issue for the major incident ``action.target``, linked to it."""
        mi_id = ctx.issue_id(action.target)
        disc = self._discovery()
        link_type = disc["link_types"][kind]
        tag = marker_tag(action.key)
        found = self._find_tagged(tag) if uncertain else None
        if found is not None:
            issue_id, key = str(found["id"]), str(found.get("key", ""))
            if not self._has_link(found, link_type, mi_id, "inwardIssue"):
                self._link(link_type, mi_id, issue_id)
            return ApplyResult(action.key, "skipped", created_id=issue_id, created_key=key,
                               detail=f"found {key}, created earlier")
        issue_type = disc["issue_types"].get(kind)
        if not issue_type:
            setting = "review_issue_type" if kind == "review" else "change_issue_type"
            return ApplyResult(action.key, "failed", retryable=False,
                               detail=f"issue type {getattr(self._write, setting)!r} ({setting}) does not exist on the site")
        fields: dict[str, Any] = {"project": {"key": self.project}, "issuetype": {"id": issue_type["id"]},
                                  "summary": summary[:255]}
        if due is not None:
            description = f"{description}\nDue: {due:%Y-%m-%d}".strip()
            if disc["fields"].get("duedate"):
                fields["duedate"] = f"{due:%Y-%m-%d}"
        if description:
            fields["description"] = self._text(description)
        prop = {"kind": kind, "for": mi_id, "for_key": self._key_of(mi_id), "rule": action.rule, "created_by": tag}
        issue_id, key = self._create_issue(fields, tag, prop)
        self._link(link_type, mi_id, issue_id)
        detail = f"created {key}"
        if owner:
            try:
                self._assign(issue_id, owner)
            except PlatformError as exc:
                # The record exists and is linked; a rerun would find it by its tag, so do not fail it.
                detail += f"; owner {owner!r} not assigned: {exc}"
        return ApplyResult(action.key, "applied", created_id=issue_id, created_key=key, detail=detail)

    def _apply_task(self, action: CreateTask, ctx: _ApplyContext, uncertain: bool) -> ApplyResult:
        return self._create_linked(action, ctx, uncertain, "review", action.title, action.description,
                                   owner=action.owner, due=action.due)

    def _apply_change(self, action: CreateChange, ctx: _ApplyContext, uncertain: bool) -> ApplyResult:
        extra = [f"Change type: {action.change_type}"] + ([f"Group: {action.group}"] if action.group else [])
        description = "\n".join([action.description, *extra]).strip()
        return self._create_linked(action, ctx, uncertain, "change", action.title, description)

    def _apply_resolve(self, action: ResolveChild, ctx: _ApplyContext, uncertain: bool) -> ApplyResult:
        child_id = ctx.issue_id(action.target)
        parent_id = ctx.issue_id(action.parent)
        # Always read: a human may have resolved (or closed) it since the last poll.
        child = self._current(child_id, fresh=True)
        category = str((((child.get("fields") or {}).get("status") or {}).get("statusCategory") or {}).get("key", ""))
        if category == "done":
            return ApplyResult(action.key, "skipped", detail="already resolved")
        tag = marker_tag(action.key)
        parent = self._key_of(parent_id) or parent_id
        text = action.notes.strip() or f"Resolved with major incident {parent}."
        prop = {**self._property(child), "resolved_by": tag}
        self._transition(child_id, self._write.resolve_status,
                         comment=self._comment_body(f"{text}\n[{tag}]", True),
                         properties=[{"key": self._property_key(), "value": prop}])
        return ApplyResult(action.key, "applied", detail=f"resolved with {parent}")


class _ChangedPaginator(Paginator[tuple[int, int]]):
    """Data Center delta pages, by ``(updated cursor in epoch ms, startAt)``. Paging by ``startAt`` alone skips
    an issue whenever an earlier one is updated mid-scan (it moves to the end and the rest shift left), so the
    query restarts from the last ``updated`` seen, and ``startAt`` only steps through issues sharing that one
    millisecond. A step that brings no issue version not seen before means the server ignores ``startAt``."""

    def __init__(self, cursor: int, *, where: str) -> None:
        super().__init__((cursor, 0), where=where, retryable=True)
        self._seen: set[Hashable] = set()

    def next_request(self, page: Page) -> tuple[int, int] | None:
        cursor, offset = self.current
        fresh = remember(self._seen, page.rows, lambda issue: (_issue_id(issue), _updated(issue)))
        if not page.rows or (page.total is not None and offset + len(page.rows) >= page.total):
            return None
        if offset > 0 and not fresh:
            raise self.stalled(f"the page at startAt {offset} repeated issues already read (startAt ignored?)")
        last = _updated_ms(page.rows[-1])
        if last is not None and last > cursor:
            return last, 0
        return cursor, offset + len(page.rows)


def _issue_id(issue: dict[str, Any]) -> str:
    return str(issue.get("id"))


def _updated(issue: dict[str, Any]) -> str:
    return str((issue.get("fields") or {}).get("updated"))


def _offset_page(answer: Any, items: str) -> Page:
    """A ``startAt`` answer (``{items: [...], "total": n}``) as a page."""
    answer = answer or {}
    total = answer.get("total")
    return Page(answer.get(items) or [], total=total if isinstance(total, int) else None)


def _error_message(response: requests.Response) -> str:
    """Jira's own ``errorMessages`` and ``errors`` joined (never the raw body: it may hold personal data)."""
    try:
        data = response.json()
    except ValueError:
        return response.reason or ""
    parts: list[str] = []
    if isinstance(data, dict):
        for message in data.get("errorMessages") or []:
            if isinstance(message, str) and message.strip():
                parts.append(message.strip())
        errors = data.get("errors")
        if isinstance(errors, dict):
            parts.extend(f"{name}: {text}" for name, text in errors.items() if isinstance(text, str))
        if isinstance(data.get("errorMessage"), str):  # servicedeskapi ErrorResponse
            parts.append(data["errorMessage"])
    text = "; ".join(parts) or response.reason or ""
    return text if len(text) <= 500 else text[:497] + "..."
