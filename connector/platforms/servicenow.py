"""ServiceNow adapter: the Table API (through pysnow 0.7.17), the Batch API and the write verbs.

pysnow is frozen and thin: its ``get`` does not paginate, every error is a bare ``HTTPError`` and nothing is
retried. So pysnow builds the client, the session and the resource URLs here, and this module does the rest:

* every HTTP request goes through :meth:`ServiceNowPlatform._attempt`, which maps the answer to a typed
  error (:mod:`connector.platforms.errors`) and counts it; :meth:`ServiceNowPlatform._call` runs it under
  the one :class:`~connector.platforms.retry.RetryPolicy`;
* the delta poll pages by keyset ``(sys_updated_on, sys_id)`` and follows ``Link rel="next"`` across empty
  pages (ACLs filter after paging);
* writes to one record are combined into one PATCH, and many PATCHes go through the Batch API.

Nothing outside this module imports pysnow.
"""

from __future__ import annotations

import base64
import functools
import http.cookiejar
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import parse_qs, urlsplit

import pysnow
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
from connector.core.settings import ServiceNowSettings, SettingsError
from connector.core.ticket import OPEN_STATES, Ticket
from connector.core.write_settings import ServiceNowWrite
from connector.platforms.base import ApplyResult, Resolver, Watermark, doctor_check, marker_tag
from connector.platforms.errors import (
    AuthenticationError,
    ClientError,
    NotFound,
    PermissionDenied,
    PlatformError,
    TransientError,
    UnexpectedResponse,
)
from connector.platforms.paging import KeysetPaginator, Page, PagingStalled, paginate
from connector.platforms.retry import (
    EMPTY_202,
    SERVICENOW_TABLE,
    UNREADABLE_2XX,
    Resolution,
    ResponseAction,
    RetryPolicy,
    error_from,
    parse_retry_after,
    resolve_exception,
    resolve_status,
)

QUERY_TIME = "%Y-%m-%d %H:%M:%S"
"""How a time is written in an encoded query: UTC, second resolution (plain dates in a query are UTC)."""

PYSNOW_SYSPARMS = ("sysparm_query", "sysparm_limit", "sysparm_offset", "sysparm_display_value",
                   "sysparm_suppress_pagination_header", "sysparm_exclude_reference_link", "sysparm_view",
                   "sysparm_fields")
"""Parameters pysnow adds to every request of a resource; set to None (dropped by requests) unless we mean them."""

MESSAGE_LIMIT = 300
ID_CHUNK = 100
JOURNAL_CHUNK = 60
TAG_PREFIX = marker_tag("")[:4]
BATCH_ROUNDS = 3
FACTS_VERSION = 1
CACHE_LIMIT = 50_000
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
JOURNAL = ("work_notes", "comments")

_FIELD = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
_PATH_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SYS_ID = re.compile(r"[0-9a-f]{32}")


class QueryValueError(ValueError):
    """A value that cannot be put into an encoded query safely (ServiceNow has no escape for ``^``)."""


class MaybeApplied(TransientError):
    """A write was sent but its answer was lost (500/502/504, a dropped connection, a read timeout): it may
    have been applied, so a retry first looks for its marker or note tag."""


def query_value(value: object, *, in_list: bool = False) -> str:
    """``value`` as text for an encoded query, or :class:`QueryValueError` if it could change the query.

    ServiceNow has no escape character: a ``^`` inside a value would start a new condition (``^OR``, ``^NQ``
    turn a filter into "or everything"), and a line break ends the parameter on some instances. Inside an
    ``IN`` list a comma would split the value.
    """
    text = value.value if isinstance(value, Enum) else value
    text = str(text)
    if "^" in text or "\n" in text or "\r" in text:
        raise QueryValueError(f"value {_shorten(text)!r} contains '^' or a line break, which ServiceNow encoded "
                              f"queries cannot escape; refusing to build the query")
    if text.lstrip().lower().startswith("javascript:"):
        # some instances evaluate a javascript: value inside a query on the server
        raise QueryValueError(f"value {_shorten(text)!r} starts with 'javascript:'; refusing to build the query")
    if in_list and "," in text:
        raise QueryValueError(f"value {_shorten(text)!r} contains ',' and cannot be part of an IN list")
    return text


def query_field(name: str) -> str:
    """A column name checked for use in an encoded query or a field list."""
    if not _FIELD.fullmatch(name):
        raise QueryValueError(f"{name!r} is not a valid ServiceNow column name")
    return name


def query_time(moment: datetime) -> str:
    """An aware datetime as an encoded-query time (UTC, ``YYYY-MM-DD HH:MM:SS``)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime(QUERY_TIME)


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _text(value: Any) -> str:
    """A canonical value as the string ServiceNow stores."""
    if value is None:
        return ""
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return query_time(value)
    return str(value)


@dataclass
class _Answer:
    """One HTTP answer after error mapping: status, headers and the parsed JSON body (None when empty)."""

    status: int
    headers: Any
    data: Any
    next_link: str | None = None

    @property
    def result(self) -> Any:
        return self.data.get("result") if isinstance(self.data, dict) else None


class _OAuthToken(AuthBase):
    """Bearer auth with a token from the password grant; the platform fetches and refreshes it."""

    def __init__(self, token_url: str) -> None:
        self.token_url = token_url
        self.access: str | None = None
        self.refresh: str | None = None
        self.expires_at = 0.0

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.access and not (request.url or "").startswith(self.token_url):
            request.headers["Authorization"] = f"Bearer {self.access}"
        return request

    def __repr__(self) -> str:
        return "<_OAuthToken>"

    @property
    def valid(self) -> bool:
        # Renew a minute early so a token does not expire between check and use.
        return self.access is not None and time.monotonic() < self.expires_at - 60

    def invalidate(self) -> None:
        self.access = None


@dataclass
class _Note:
    """One journal entry an action adds: ``found`` when it was on the record before this apply (the action
    is then skipped), ``landed`` when it must not be sent (found, or sent by an attempt whose answer was lost)."""

    index: int
    element: str
    text: str
    tag: str
    uncertain: bool
    landed: bool = False
    found: bool = False


@dataclass
class _Patch:
    """Field writes and journal entries for one record, sent as one PATCH; ``members`` are the actions
    (by index) that ride on it, with the result each gets when it succeeds."""

    table: str
    sys_id: str
    fields: dict[str, str] = field(default_factory=dict)
    notes: list[_Note] = field(default_factory=list)
    members: list[tuple[int, ApplyResult]] = field(default_factory=list)
    with_fields: set[int] = field(default_factory=set)
    error: PlatformError | None = None

    def payload(self) -> dict[str, str]:
        body = dict(self.fields)
        for element in JOURNAL:
            texts = [note.text for note in self.notes if note.element == element and not note.landed]
            if texts:
                # One PATCH carries one entry per journal field, so notes for the same record are joined.
                body[element] = "\n\n".join(texts)
        return body

    @property
    def path(self) -> str:
        return f"/table/{self.table}/{self.sys_id}"


class _Run:
    """The bookkeeping of one :meth:`ServiceNowPlatform.apply` call."""

    def __init__(self, actions: Sequence[Action], resolve: Resolver, uncertain: frozenset[str]) -> None:
        self.actions = actions
        self.resolve_fn = resolve
        self.uncertain = uncertain
        self.results: dict[int, ApplyResult] = {}
        self.created: dict[str, str] = {}
        self.failed_targets: set[str] = set()
        self.patches: dict[tuple[str, str], _Patch] = {}

    def resolve(self, target: str) -> str:
        if target in self.failed_targets:
            raise _DependencyFailed(f"{target} was not created in this cycle")
        real = self.created.get(target) or self.resolve_fn(target)
        if real is None and not target.startswith("new-"):
            real = target
        if real is None:
            raise _DependencyFailed(f"{target} has not been created yet")
        if not _PATH_ID.fullmatch(real):
            raise QueryValueError(f"{_shorten(real)!r} is not a ServiceNow sys_id")
        return real


class _DependencyFailed(PlatformError):
    """An action depends on a record whose creation failed."""

    retryable = True


class ServiceNowPlatform:
    """A ServiceNow instance as the sync cycle sees it (see :class:`connector.platforms.base.Platform`).

    ``url`` is the instance (``https://acme.service-now.com``; plain ``http`` only for a loopback
    simulator). Basic auth, or the OAuth password grant (with refresh) when ``client_id`` is given.
    ``verify`` is True or a CA bundle path. ``batch`` and ``page_size`` override the mapping's ``write:``
    settings. The adapter is meant for one thread: ServiceNow serialises the requests of a session anyway.
    """

    name = "servicenow"

    def __init__(self, url: str, username: str, password: str | SecretStr, mapping: Mapping, *,
                 client_id: str | None = None, client_secret: str | SecretStr | None = None,
                 verify: bool | str = True, timeout: float = 30.0, policy: RetryPolicy | None = None,
                 batch: bool | None = None, page_size: int | None = None) -> None:
        host, use_ssl = _parse_url(url)
        if not username or not password:
            raise SettingsError("ServiceNow needs a username and a password")
        self.mapping = mapping
        self.username = username
        self._password = password if isinstance(password, SecretStr) else SecretStr(password)
        self._client_id = client_id
        if client_secret is not None and not isinstance(client_secret, SecretStr):
            client_secret = SecretStr(client_secret)
        self._client_secret = client_secret
        if client_id and client_secret is None:
            raise SettingsError("ServiceNow OAuth needs a client secret with the client id")
        self._timeout = float(timeout)
        self._policy = policy or RetryPolicy()
        self._requests = 0

        session = requests.Session()
        self._oauth: _OAuthToken | None = None
        if client_id:
            self._oauth = _OAuthToken(("https://" if use_ssl else "http://") + host + "/oauth_token.do")
            session.auth = self._oauth
        else:
            session.auth = HTTPBasicAuth(username, self._password.get_secret_value())
        # ServiceNow serialises requests that share a session cookie (and drops them with a 202 when more
        # than ten queue up), so no cookie is ever kept.
        session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        session.verify = verify
        self._verify = verify
        self._client = pysnow.Client(host=host, use_ssl=use_ssl, session=session)
        self._session = self._client.session
        self.base_url: str = self._client.base_url

        write = mapping.write
        if not isinstance(write, ServiceNowWrite):
            raise SettingsError(f"{mapping.path} is a {mapping.platform} mapping, not a ServiceNow one")
        self._write = write
        self._table = write.table
        self._batch = write.batch if batch is None else batch
        self._batch_size = write.batch_size
        self._page_size = max(1, page_size or write.page_size)
        self._overlap = write.overlap
        self._poll_filter = write.poll_filter
        if "^NQ" in self._poll_filter:
            raise SettingsError("write.poll_filter must not contain ^NQ (it is repeated in each keyset group)")
        self._id_field = query_field(mapping.source("id") or "sys_id")
        self._updated_field = query_field(mapping.source("updated_at") or "sys_updated_on")
        self._fields = self._poll_fields()
        self._facts: dict[str, Any] | None = None
        self._known: dict[str, dict[str, Any]] = {}
        self._seen: dict[tuple[str, str], str] = {}

    @classmethod
    def from_settings(cls, settings: ServiceNowSettings, mapping: Mapping,
                      policy: RetryPolicy | None = None) -> "ServiceNowPlatform":
        """An adapter from the ``[servicenow]`` settings; :class:`SettingsError` names what is missing."""
        url, username, password = settings.url, settings.username, settings.secret()
        if not url or not username or not password:
            missing = [f"servicenow.{name} (or MIM_SERVICENOW_{name.upper()})"
                       for name, value in (("url", url), ("username", username), ("password", password)) if not value]
            raise SettingsError("ServiceNow is not configured: set " + ", ".join(missing))
        return cls(url, username, password, mapping, client_id=settings.client_id,
                   client_secret=settings.client_secret, verify=settings.verify, timeout=settings.timeout,
                   policy=policy)

    def __repr__(self) -> str:
        auth = "oauth" if self._oauth else "basic"
        return f"ServiceNowPlatform(url={self.base_url!r}, username={self.username!r}, auth={auth!r})"

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent so far: every attempt, token requests included (a Batch API call counts once)."""
        return self._requests

    def close(self) -> None:
        """Release the session's connections."""
        self._session.close()

    # -- transport -------------------------------------------------------------------------------

    def _call(self, method: str, api_path: str, *, params: dict[str, Any] | None = None,
              body: Any = None, expect: type | None = None) -> _Answer:
        """One logical request under the retry policy (each attempt is another request)."""
        return self._policy.call(lambda: self._attempt(method, api_path, params=params, body=body, expect=expect))

    def _attempt(self, method: str, api_path: str, *, params: dict[str, Any] | None = None,
                 body: Any = None, expect: type | None = None) -> _Answer:
        """Send one HTTP request through pysnow and map the answer (the only place that sends, besides the
        OAuth token call). ``expect`` (list or dict) is the type ``result`` must have."""
        if self._oauth is not None and not self._oauth.valid:
            self._fetch_token()
        resource = self._client.resource(api_path=api_path, timeout=self._timeout)
        resource.parameters.add_custom({**dict.fromkeys(PYSNOW_SYSPARMS), **(params or {})})
        captured: list[requests.Response] = []
        path = "/api/now" + api_path
        self._requests += 1
        try:
            # verify per request: requests lets REQUESTS_CA_BUNDLE override the session's own bundle
            resource.request(method, data=None if body is None else json.dumps(body), verify=self._verify,
                             hooks={"response": [lambda response, *args, **kwargs: captured.append(response)]})
        except requests.exceptions.ConnectTimeout as exc:
            raise _failure(resolve_exception(exc, SERVICENOW_TABLE), "connection timed out", method, path) from None
        except requests.exceptions.Timeout as exc:
            raise _failure(resolve_exception(exc, SERVICENOW_TABLE),
                           f"no answer within {self._timeout:g}s ({type(exc).__name__})", method, path) from None
        except requests.exceptions.ConnectionError as exc:
            raise _failure(resolve_exception(exc, SERVICENOW_TABLE), f"connection failed ({type(exc).__name__})",
                           method, path) from None
        response = captured[-1]
        if response.status_code == 401 and self._oauth is not None:
            self._oauth.invalidate()
        answer = _answer(response, method, path)
        if expect is not None and not isinstance(answer.result, expect):
            raise _failure(SERVICENOW_TABLE[UNREADABLE_2XX], f"answer has no result {expect.__name__}", method, path,
                           status=answer.status)
        return answer

    def _fetch_token(self) -> None:
        """Password grant (or refresh grant when a refresh token is held) at ``/oauth_token.do``."""
        oauth, client_id, client_secret = self._oauth, self._client_id, self._client_secret
        if oauth is None or not client_id or client_secret is None:
            raise AuthenticationError("OAuth needs a client id and a client secret", method="POST", path="/oauth_token.do")
        form = {"client_id": client_id, "client_secret": client_secret.get_secret_value()}
        if oauth.refresh:
            form.update(grant_type="refresh_token", refresh_token=oauth.refresh)
        else:
            form.update(grant_type="password", username=self.username, password=self._password.get_secret_value())
        self._requests += 1
        try:
            response = self._session.post(oauth.token_url, data=form, timeout=self._timeout, verify=self._verify,
                                          headers={"Content-Type": "application/x-www-form-urlencoded"})
        except requests.exceptions.RequestException as exc:
            raise TransientError(f"token request failed ({type(exc).__name__})", method="POST",
                                 path="/oauth_token.do") from None
        if response.status_code in (400, 401) and oauth.refresh:
            oauth.refresh = None  # an expired refresh token: the next attempt uses the password grant
            raise TransientError("refresh token refused", method="POST", path="/oauth_token.do")
        if response.status_code in (400, 401):
            raise AuthenticationError("OAuth token request refused (check client id, client secret and user)",
                                      status=response.status_code, method="POST", path="/oauth_token.do")
        answer = _answer(response, "POST", "/oauth_token.do")
        data = answer.data if isinstance(answer.data, dict) else {}
        if not data.get("access_token"):
            raise UnexpectedResponse("token answer has no access_token", method="POST", path="/oauth_token.do")
        oauth.access = str(data["access_token"])
        oauth.refresh = str(data.get("refresh_token") or "") or None
        oauth.expires_at = time.monotonic() + float(data.get("expires_in") or 1800)

    # -- reading ---------------------------------------------------------------------------------

    def _poll_fields(self) -> list[str]:
        fields = [query_field(name) for name in self.mapping.platform_fields()]
        for extra in ("sys_mod_count", self._id_field, self._updated_field):
            if extra not in fields:
                fields.append(extra)
        return fields

    def _read_params(self, query: str, fields: Sequence[str], limit: int) -> dict[str, Any]:
        return {"sysparm_query": query, "sysparm_fields": ",".join(fields), "sysparm_limit": str(limit),
                "sysparm_display_value": "false", "sysparm_exclude_reference_link": "true"}

    def _get_page(self, table: str, params: dict[str, Any]) -> _Answer:
        return self._call("GET", f"/table/{table}", params=params, expect=list)

    def _pages(self, table: str, first: str, after: Callable[[dict[str, Any]], str],
               key: Callable[[dict[str, Any]], tuple[str, ...]], fields: Sequence[str],
               limit: int) -> Iterator[list[dict[str, Any]]]:
        """Every page of a keyset-ordered query (a :class:`KeysetPaginator`): ``first`` is the first page's
        query, ``after(row)`` the query for rows after ``row``. An empty page is not the end while
        ``Link rel="next"`` exists; a loop that makes no progress raises :class:`PagingStalled`."""
        paginator = KeysetPaginator(self._read_params(first, fields, limit),
                                    lambda row: self._read_params(after(row), fields, limit),
                                    lambda link: self._link_params(link, table), key, limit,
                                    where=f"GET /api/now/table/{table}")

        def fetch(params: dict[str, Any]) -> Page:
            answer = self._get_page(table, params)
            return Page(answer.result, link=answer.next_link, total=_int(answer.headers.get("X-Total-Count")))

        for page in paginate(paginator, fetch):
            yield list(page.rows)

    def _link_params(self, link: str, table: str) -> dict[str, Any]:
        """The query parameters of a ``Link`` URL; only its parameters are used, never its host, so a link
        can never send our credentials elsewhere."""
        parts = urlsplit(link)
        if not parts.path.rstrip("/").endswith(f"/table/{table}"):
            raise UnexpectedResponse("Link header points at another resource", method="GET",
                                     path=f"/api/now/table/{table}")
        return {name: values[-1] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}

    def _select(self, table: str, query: str, fields: Sequence[str], limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Rows of ``table`` matching ``query`` (no ``^NQ``), every page, keyset by ``sys_id``."""
        id_field = "sys_id"
        fields = list(fields) + ([id_field] if id_field not in fields else [])
        prefix = f"{query}^" if query else ""
        for page in self._pages(table, f"{prefix}ORDERBY{id_field}",
                                lambda row: f"{prefix}{id_field}>{query_value(row.get(id_field, ''))}^ORDERBY{id_field}",
                                lambda row: (str(row.get(id_field, "")),), fields, limit or self._page_size):
            yield from page

    def _remember(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            sys_id = row.get(self._id_field)
            if not isinstance(sys_id, str):
                continue
            self._known.pop(sys_id, None)
            self._known[sys_id] = dict(row)
        while len(self._known) > CACHE_LIMIT:
            self._known.pop(next(iter(self._known)))

    def fetch_changed(self, since: Watermark | None, horizon: datetime) -> Iterator[dict[str, Any]]:
        """Incidents updated at or after ``since`` minus the overlap (or ``horizon``), in
        ``(sys_updated_on, sys_id)`` order, every page. A quiet poll is one request.

        Each ``(sys_id, sys_mod_count)`` comes once per call. A version this adapter already returned in an
        earlier call is left out again only when it lies at or before ``since``: the overlap re-reads those
        on purpose (rows committed late within the same second), while anything after ``since`` may belong
        to a cycle that never committed and must be returned again.
        """
        start = query_time(since.updated_at - self._overlap if since is not None else horizon)
        mark = (query_time(since.updated_at), since.id) if since is not None else None
        updated, ident = self._updated_field, self._id_field
        shared = f"{self._poll_filter}^" if self._poll_filter else ""
        order = f"ORDERBY{updated}^ORDERBY{ident}"
        first = f"{shared}{updated}>={start}^{order}"

        def after(row: dict[str, Any]) -> str:
            ts, sys_id = query_value(row.get(updated, "")), query_value(row.get(ident, ""))
            return f"{shared}{updated}>{ts}^NQ{shared}{updated}={ts}^{ident}>{sys_id}^{order}"

        earlier = {k: v for k, v in self._seen.items() if v >= start}
        self._seen = dict(earlier)
        returned: set[tuple[str, str]] = set()
        for page in self._pages(self._table, first, after,
                                lambda row: (str(row.get(updated, "")), str(row.get(ident, ""))),
                                self._fields, self._page_size):
            self._remember(page)
            for row in page:
                stamp, sys_id = str(row.get(updated, "")), str(row.get(ident, ""))
                version = (sys_id, str(row.get("sys_mod_count", "")))
                if version in returned:
                    continue
                returned.add(version)
                if version in earlier and mark is not None and (stamp, sys_id) <= mark:
                    continue
                self._seen[version] = stamp
                yield row

    def fetch_marked(self) -> list[dict[str, Any]]:
        """Incidents carrying a ``mim:`` marker whose major incident state is proposed, accepted or rejected,
        and that are not closed or canceled."""
        marker = query_field(self._write.marker_field)
        major = query_field(self._write.major_field)
        state = query_field(self.mapping.source("state") or "state")
        majors = ",".join(query_value(self.mapping.to_platform("major", m), in_list=True)
                          for m in ("proposed", "accepted", "rejected"))
        closed = ",".join(query_value(self.mapping.to_platform("state", s), in_list=True) for s in ("closed", "canceled"))
        # IN on the major state, never !=: a != condition also drops the rows where the field is empty.
        query = f"{marker}STARTSWITHmim:^{major}IN{majors}^{state}NOT IN{closed}"
        rows = list(self._select(self._table, query, self._fields))
        self._remember(rows)
        return rows

    def _fetch_records(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Fresh incidents by sys_id (``sys_idIN…`` in chunks)."""
        rows: list[dict[str, Any]] = []
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), ID_CHUNK):
            chunk = ",".join(query_value(i, in_list=True) for i in unique[start:start + ID_CHUNK])
            rows.extend(self._select(self._table, f"{self._id_field}IN{chunk}", self._fields))
        self._remember(rows)
        return rows

    def fetch_followups(self, mi_ids: Sequence[str],
                        changes: dict[str, str | None] | None = None) -> dict[str, dict[str, Any]]:
        """The change (the incident's ``rfc``) and the review tasks (``incident_task`` with
        ``incident=<mi>``) of each major incident: one ``sys_idIN`` query for the changes, one ``incidentIN``
        query for the tasks. The incidents are read first only for ids whose change is neither given nor
        cached from this adapter's poll."""
        unique = [i for i in dict.fromkeys(str(i) for i in mi_ids) if i and not i.startswith("new-")]
        out: dict[str, dict[str, Any]] = {i: {"change": None, "tasks": []} for i in unique}
        if not unique:
            return out
        link_field = self._write.change_link_field
        known = dict(changes or {})
        missing = [i for i in unique if i not in known and i not in self._known]
        if missing:
            self._fetch_records(missing)
        for mi in unique:
            if mi not in known:
                known[mi] = _text((self._known.get(mi) or {}).get(link_field)) or None
        title = self.mapping.source("title") or "short_description"
        fields = ["sys_id", "number", "state", title]
        change_ids = list(dict.fromkeys(c for c in (known.get(mi) for mi in unique) if c))
        change_table = self._write.change_table
        change_states = self._write.change_states
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(change_ids), ID_CHUNK):
            chunk = ",".join(query_value(c, in_list=True) for c in change_ids[start:start + ID_CHUNK])
            for row in self._select(change_table, f"sys_idIN{chunk}", fields):
                found[str(row.get("sys_id"))] = row
        for mi in unique:
            hit = found.get(known.get(mi) or "")
            if hit is not None:
                out[mi]["change"] = {"id": str(hit.get("sys_id")), "key": _text(hit.get("number")) or None,
                                     "state": change_states.get(_text(hit.get("state")), "unknown")}
        task_table = self._write.task_table
        parent = query_field(self._write.task_parent_field)
        task_states = self._write.task_states
        for start in range(0, len(unique), ID_CHUNK):
            chunk = ",".join(query_value(i, in_list=True) for i in unique[start:start + ID_CHUNK])
            for row in self._select(task_table, f"{parent}IN{chunk}", fields + [parent]):
                mi = _text(row.get(parent))
                if mi in out:
                    out[mi]["tasks"].append({"id": str(row.get("sys_id")), "key": _text(row.get("number")) or None,
                                             "state": task_states.get(_text(row.get("state")), "unknown"),
                                             "title": _text(row.get(title))})
        for entry in out.values():
            entry["tasks"].sort(key=lambda t: (t["key"] or "", t["id"]))
        return out

    def to_ticket(self, raw: dict[str, Any]) -> Ticket:
        """A raw incident as a canonical ticket, through the mapping."""
        return self.mapping.to_ticket(raw, base_url=self.base_url)

    # -- discovery -------------------------------------------------------------------------------

    def discover(self, cached: dict[str, Any] | None) -> dict[str, Any]:
        """Whether the stage field exists on the incident table (``sys_dictionary``), plus room for the
        group and user lookups ``apply`` makes. With ``cached`` no request is sent.

        ``apply`` adds name → sys_id lookups to the dict returned here; storing it again after a cycle
        keeps them for the next run.
        """
        if cached is not None and cached.get("version") == FACTS_VERSION and "stage_field" in cached:
            cached.setdefault("groups", {})
            cached.setdefault("users", {})
            self._facts = cached
            return cached
        stage = self._write.stage_field
        facts: dict[str, Any] = {"version": FACTS_VERSION, "stage_field": None, "groups": {}, "users": {}}
        if stage:
            facts["stage_field"] = stage if self._field_exists(query_field(str(stage))) else None
        self._facts = facts
        return facts

    def _field_exists(self, element: str) -> bool:
        tables = ",".join(query_value(t, in_list=True) for t in dict.fromkeys((self._table, "task")))
        try:
            rows = list(self._select("sys_dictionary", f"nameIN{tables}^element={element}", ["name", "element"],
                                     limit=10))
            return any(row.get("element") == element for row in rows)
        except (PermissionDenied, NotFound):
            # Integration users often may not read the dictionary: look at one incident instead.
            answer = self._get_page(self._table, self._read_params("", ["sys_id", element], 1))
            rows = answer.result
            return bool(rows) and element in rows[0]

    def doctor_checks(self, discovery: dict[str, Any]) -> list[tuple[str, bool, str, str]]:
        """Read-only checks for ``mim doctor``: the mapped incident fields exist, the stage field, every
        table the connector reads or writes is readable, and the Batch API answers (with a GET item)."""
        checks: list[tuple[str, bool, str, str]] = []
        checks.append(doctor_check("mapped incident fields", self._check_fields,
                                   "fix mappings/servicenow.yaml or install the plugin that adds the field "
                                   "(major_incident_state comes with Major Incident Management)"))
        stage = discovery.get("stage_field")
        checks.append(("stage field", True, f"{stage} exists on {self._table}" if stage else
                       "no stage field: stages are written as work notes",
                       "" if stage else f"add {self._write.stage_field or 'u_mim_stage'} (string) to "
                                        f"{self._table} to see the stage as a field"))
        tables = [self._table, "sys_journal_field", self._write.task_table, self._write.change_table,
                  self._write.group_table, self._write.user_table]
        for table in dict.fromkeys(tables):
            checks.append(doctor_check(f"table {table} readable", functools.partial(self._check_table, table),
                                       f"give the integration user read access to {table} (writes are not tried: "
                                       f"doctor is read-only)"))
        if self._batch:
            checks.append(doctor_check("Batch API", self._check_batch,
                                       "allow /api/now/v1/batch for the integration user, or set write.batch: false"))
        return checks

    def _check_fields(self) -> str:
        wanted = [f for f in self._fields if not f.startswith("sys_")]
        names = ",".join(query_value(f, in_list=True) for f in wanted)
        tables = ",".join(query_value(t, in_list=True) for t in dict.fromkeys((self._table, "task")))
        try:
            rows = list(self._select("sys_dictionary", f"nameIN{tables}^elementIN{names}", ["element"]))
            found = {str(r.get("element")) for r in rows}
        except (PermissionDenied, NotFound):
            sample = self._get_page(self._table, self._read_params("", wanted, 1)).result
            if not sample:
                return "sys_dictionary is not readable and there is no incident to look at: not checked"
            found = set(sample[0])
        missing = [f for f in wanted if f not in found]
        if missing:
            raise ClientError(f"{self._table} has no field {', '.join(missing)}")
        return f"{len(wanted)} fields found"

    def _check_table(self, table: str) -> str:
        self._get_page(query_field(table), self._read_params("", ["sys_id"], 1))
        return "readable"

    def _check_batch(self) -> str:
        item = {"id": "1", "method": "GET", "url": f"/api/now/table/{self._table}?sysparm_limit=1&sysparm_fields=sys_id",
                "headers": [{"name": "Accept", "value": "application/json"}], "exclude_response_headers": True}
        answer = self._call("POST", "/v1/batch", body={"batch_request_id": "doctor", "rest_requests": [item]})
        serviced = answer.data.get("serviced_requests") if isinstance(answer.data, dict) else None
        if not serviced:
            raise UnexpectedResponse("the Batch API serviced nothing", method="POST", path="/api/now/v1/batch")
        return "answers"

    def _ensure_facts(self) -> dict[str, Any]:
        return self._facts if self._facts is not None else self.discover(None)

    # -- writing ---------------------------------------------------------------------------------

    def apply(self, actions: Sequence[Action], resolve: Resolver, uncertain: frozenset[str] = frozenset()) -> list[ApplyResult]:
        """Perform ``actions`` idempotently and report each (see the protocol).

        Creates are sent as they come; field writes and journal entries are collected per record and sent
        as one PATCH per record at the end (placed at the record's first write), many of them through the
        Batch API. What the adapter already knows to be true (from the records it read) is not written.
        """
        self._ensure_facts()
        run = _Run(actions, resolve, uncertain)
        for index, action in enumerate(actions):
            try:
                self._plan_action(run, index, action)
            except (PlatformError, ValueError) as exc:
                run.results[index] = _failed(action.key, exc)
                if isinstance(action, CreateParent):
                    run.failed_targets.add(action.target)
        self._flush(run)
        return [run.results[index] for index in range(len(actions))]

    def _plan_action(self, run: _Run, index: int, action: Action) -> None:
        handlers: dict[type, Callable[[_Run, int, Any], None]] = {
            DeclareMajor: self._declare, CreateParent: self._create_parent, LinkChild: self._link,
            AddNote: self._note, SetFields: self._set_fields, SetStage: self._set_stage,
            CreateTask: self._create_task, CreateChange: self._create_change, ResolveChild: self._resolve_child,
        }
        if isinstance(action, Notify):
            run.results[index] = ApplyResult(action.key, "skipped", detail="not a platform write")
            return
        handler = handlers.get(type(action))
        if handler is None:
            raise ClientError(f"the ServiceNow adapter cannot apply {type(action).__name__}")
        handler(run, index, action)

    def _queue(self, run: _Run, index: int, action: Action, table: str, sys_id: str, fields: dict[str, str],
               note: tuple[str, str] | None = None, result: ApplyResult | None = None) -> None:
        """Add writes to the record's pending PATCH, or report the action skipped when nothing is left.
        A note of an uncertain action is checked against the journal at flush time (one query for many)."""
        if not fields and note is None:
            run.results[index] = result or ApplyResult(action.key, "skipped", detail="already true")
            return
        patch = run.patches.get((table, sys_id))
        if patch is None:
            patch = run.patches[(table, sys_id)] = _Patch(table, sys_id)
        patch.fields.update(fields)
        if fields:
            patch.with_fields.add(index)
        if note is not None:
            element, text = note
            tag = marker_tag(action.key)
            patch.notes.append(_Note(index, element, f"{text}\n[{tag}]", tag, action.key in run.uncertain))
        patch.members.append((index, result or ApplyResult(action.key, "applied")))

    def _current(self, run: _Run, action: Action, sys_id: str, table: str | None = None) -> dict[str, Any] | None:
        """The record as last read; read now if the action is uncertain and the record was not seen."""
        table = table or self._table
        known = self._known.get(sys_id) if table == self._table else None
        if known is None and action.key in run.uncertain:
            answer = self._call("GET", f"/table/{table}/{sys_id}", expect=dict,
                                params={"sysparm_fields": ",".join(self._fields), "sysparm_display_value": "false",
                                        "sysparm_exclude_reference_link": "true"})
            known = answer.result if isinstance(answer.result, dict) else None
            if known is not None and table == self._table:
                self._remember([known])
        return known

    @staticmethod
    def _unchanged(fields: dict[str, str], current: dict[str, Any] | None) -> dict[str, str]:
        if current is None:
            return fields
        return {name: value for name, value in fields.items() if name not in current or current[name] != value}

    def _platform_fields(self, canonical: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
        """Canonical fields as platform columns and values; stage values that have no field become notes."""
        out: dict[str, str] = {}
        notes: list[str] = []
        stage_field = self._ensure_facts().get("stage_field")
        for name, value in canonical.items():
            if name == "stage" and not stage_field:
                notes.append(f"Major incident stage: {_text(value)}")
                continue
            column = stage_field if name == "stage" else self.mapping.source(name)
            if column is None or not _FIELD.fullmatch(column) or "." in column:
                raise ClientError(f"canonical field {name!r} has no writable ServiceNow column in the mapping")
            via = self._priority_via(value) if name == "priority" else None
            if via:
                # priority lookup rules derive priority from impact x urgency and overwrite a direct write
                for field_name, field_value in via.items():
                    out[str(self.mapping.source(field_name) or field_name)] = _text(field_value)
                out[column] = _text(self.mapping.to_platform(name, value))
            elif name == "assignment_group":
                out[column] = self._reference("groups", _text(value))
            elif name == "assignee":
                out[column] = self._reference("users", _text(value))
            else:
                out[column] = _text(self.mapping.to_platform(name, value))
        return out, notes

    def _priority_via(self, priority: Any) -> dict[str, int | str] | None:
        """The impact and urgency that make ``priority`` (``write.priority_via``), if the mapping says."""
        via = self._write.priority_via
        return via.get(priority) or via.get(str(priority))

    def _reference(self, kind: str, value: str) -> str:
        """A group or user name as its sys_id (looked up once, cached in the discovery facts); the value
        itself when it is a sys_id already or nothing matches."""
        if not value or _SYS_ID.fullmatch(value):
            return value
        cache: dict[str, str | None] = self._ensure_facts().setdefault(kind, {})
        if value not in cache:
            if kind == "groups":
                table = self._write.group_table
                column = self._write.group_name_field
            else:
                table = self._write.user_table
                column = self._write.user_name_field
            try:
                answer = self._get_page(table, self._read_params(f"{query_field(column)}={query_value(value)}",
                                                                 ["sys_id"], 1))
                rows = answer.result
                cache[value] = str(rows[0]["sys_id"]) if rows and rows[0].get("sys_id") else None
            except (PermissionDenied, NotFound):
                cache[value] = None
        return cache[value] or value

    def _declare(self, run: _Run, index: int, action: DeclareMajor) -> None:
        sys_id = run.resolve(action.target)
        current = self._current(run, action, sys_id)
        major_field = self._write.major_field
        marker_field = self._write.marker_field
        target_state = "accepted" if action.mode == "accept" else "proposed"
        fields, notes = self._platform_fields(action.fields)
        now_state = self._canonical_major(current.get(major_field)) if current else None
        if now_state in ("rejected", "canceled"):
            run.results[index] = ApplyResult(action.key, "skipped", retryable=False,
                                             detail=f"the major incident state is {now_state} (a person decided): not proposed again")
            return
        if now_state != "accepted":
            fields[major_field] = _text(self.mapping.to_platform("major", target_state))
        fields[marker_field] = action.marker
        note = ("work_notes", "\n".join(notes)) if notes else None
        self._queue(run, index, action, self._table, sys_id, self._unchanged(fields, current), note)

    def _canonical_major(self, raw: Any) -> str:
        for canonical in ("proposed", "accepted", "rejected", "canceled"):
            if raw == self.mapping.to_platform("major", canonical):
                return canonical
        return "none"

    def _find_marked(self, table: str, marker: str, fields: Sequence[str] = ("sys_id", "number")) -> dict[str, Any] | None:
        """The record of ``table`` whose marker field equals ``marker`` (one request), or None."""
        marker_field = query_field(self._write.marker_field)
        answer = self._get_page(table, self._read_params(f"{marker_field}={query_value(marker)}^ORDERBYsys_created_on",
                                                         list(fields), 1))
        rows = answer.result
        return rows[0] if rows else None

    def _create(self, table: str, payload: dict[str, str], marker: str) -> dict[str, Any]:
        """POST one record under the retry policy. A retry after an answer that may have been lost looks the
        marker up first, so a lost answer never creates a second record."""
        maybe_sent = False

        def attempt() -> dict[str, Any]:
            nonlocal maybe_sent
            if maybe_sent:
                found = self._find_marked(table, marker)
                if found is not None:
                    return found
            try:
                answer = self._attempt("POST", f"/table/{table}", body=payload,
                                       params={"sysparm_fields": "sys_id,number", "sysparm_exclude_reference_link": "true"})
            except PlatformError as exc:
                maybe_sent = maybe_sent or isinstance(exc, MaybeApplied)
                raise
            if not isinstance(answer.result, dict) or not answer.result.get("sys_id"):
                raise UnexpectedResponse("create answer has no sys_id", status=answer.status, method="POST",
                                         path=f"/api/now/table/{table}")
            return answer.result

        return self._policy.call(attempt)

    def _create_parent(self, run: _Run, index: int, action: CreateParent) -> None:
        major_field = self._write.major_field
        marker_field = self._write.marker_field
        if action.key in run.uncertain:
            found = self._find_marked(self._table, action.marker)
            if found is not None:
                run.created[action.target] = str(found["sys_id"])
                run.results[index] = ApplyResult(action.key, "skipped", created_id=str(found["sys_id"]),
                                                 created_key=found.get("number") or None, detail="already created")
                return
        fields, notes = self._platform_fields(action.fields)
        fields[major_field] = _text(self.mapping.to_platform("major", "accepted" if action.mode == "accept" else "proposed"))
        fields[marker_field] = action.marker
        if notes:
            fields["work_notes"] = "\n".join(notes)
        record = self._create(self._table, fields, action.marker)
        run.created[action.target] = str(record["sys_id"])
        run.results[index] = ApplyResult(action.key, "applied", created_id=str(record["sys_id"]),
                                         created_key=record.get("number") or None)

    def _link(self, run: _Run, index: int, action: LinkChild) -> None:
        parent = run.resolve(action.parent)
        child = run.resolve(action.target)
        parent_field = self._write.parent_field
        current = self._known.get(child)
        self._queue(run, index, action, self._table, child, self._unchanged({parent_field: parent}, current))

    def _note(self, run: _Run, index: int, action: AddNote) -> None:
        sys_id = run.resolve(action.target)
        self._queue(run, index, action, self._table, sys_id, {},
                    ("work_notes" if action.internal else "comments", action.text))

    def _resolution(self, notes: str | None) -> dict[str, str]:
        """The fields that resolve an incident: state, close code and notes (mandatory on most instances)."""
        state_column = self.mapping.source("state") or "state"
        return {state_column: self._write.resolved_state,
                "close_code": self._write.close_code,
                "close_notes": notes or self._write.close_notes}

    def _set_fields(self, run: _Run, index: int, action: SetFields) -> None:
        sys_id = run.resolve(action.target)
        canonical = dict(action.fields)
        fields, notes = self._platform_fields(canonical)
        if canonical.get("state") == "resolved":
            for name, value in self._resolution(None).items():
                fields.setdefault(name, value)
        current = self._current(run, action, sys_id)
        note = ("work_notes", "\n".join(notes)) if notes else None
        self._queue(run, index, action, self._table, sys_id, self._unchanged(fields, current), note)

    def _set_stage(self, run: _Run, index: int, action: SetStage) -> None:
        sys_id = run.resolve(action.target)
        stage_field = self._ensure_facts().get("stage_field")
        if stage_field:
            value = _text(self.mapping.to_platform("stage", action.stage))
            self._queue(run, index, action, self._table, sys_id,
                        self._unchanged({stage_field: value}, self._known.get(sys_id)))
            return
        self._queue(run, index, action, self._table, sys_id, {}, ("work_notes", f"Major incident stage: {action.stage}"))

    def _create_task(self, run: _Run, index: int, action: CreateTask) -> None:
        mi = run.resolve(action.target)
        table = self._write.task_table
        tag = marker_tag(action.key)
        if action.key in run.uncertain:
            found = self._find_marked(table, tag)
            if found is not None:
                run.results[index] = ApplyResult(action.key, "skipped", created_id=str(found["sys_id"]),
                                                 created_key=found.get("number") or None, detail="already created")
                return
        payload = {self._write.task_parent_field: mi,
                   self.mapping.source("title") or "short_description": action.title,
                   self.mapping.source("description") or "description": action.description,
                   self._write.marker_field: tag}
        if action.owner:
            payload[self.mapping.source("assignee") or "assigned_to"] = self._reference("users", action.owner)
        if action.due is not None:
            payload[self._write.task_due_field] = query_time(action.due)
        record = self._create(table, payload, tag)
        run.results[index] = ApplyResult(action.key, "applied", created_id=str(record["sys_id"]),
                                         created_key=record.get("number") or None)

    def _create_change(self, run: _Run, index: int, action: CreateChange) -> None:
        mi = run.resolve(action.target)
        table = self._write.change_table
        tag = marker_tag(action.key)
        found = self._find_marked(table, tag) if action.key in run.uncertain else None
        if found is not None:
            result = ApplyResult(action.key, "skipped", created_id=str(found["sys_id"]),
                                 created_key=found.get("number") or None, detail="already created")
            record = found
        else:
            payload = {self.mapping.source("title") or "short_description": action.title,
                       self.mapping.source("description") or "description": action.description,
                       "type": action.change_type,
                       self._write.marker_field: tag}
            if action.group:
                payload[self.mapping.source("assignment_group") or "assignment_group"] = self._reference("groups", action.group)
            record = self._create(table, payload, tag)
            result = ApplyResult(action.key, "applied", created_id=str(record["sys_id"]),
                                 created_key=record.get("number") or None)
        link_field = self._write.change_link_field
        current = self._known.get(mi)
        if found is not None and current is None:
            current = self._current(run, action, mi)
        link = self._unchanged({link_field: str(record["sys_id"])}, current)
        if link and result.status == "skipped":
            result = ApplyResult(action.key, "applied", created_id=result.created_id, created_key=result.created_key)
        self._queue(run, index, action, self._table, mi, link, result=result)

    def _resolve_child(self, run: _Run, index: int, action: ResolveChild) -> None:
        child = run.resolve(action.target)
        current = self._current(run, action, child)
        state_column = self.mapping.source("state") or "state"
        if current is not None and state_column in current:
            state = self._canonical_state(current[state_column])
            if state not in OPEN_STATES:
                run.results[index] = ApplyResult(action.key, "skipped", detail=f"child is already {state}")
                return
        self._queue(run, index, action, self._table, child, self._resolution(action.notes))

    def _canonical_state(self, raw: Any) -> str:
        for canonical in ("new", "in_progress", "on_hold", "resolved", "closed", "canceled"):
            if raw == self.mapping.to_platform("state", canonical):
                return canonical
        return "unknown"

    # -- sending the collected PATCHes -----------------------------------------------------------

    def _flush(self, run: _Run) -> None:
        patches = list(run.patches.values())
        try:
            self._find_landed_notes([n for p in patches for n in p.notes if n.uncertain], patches, found=True)
        except PlatformError as exc:
            for patch in patches:
                if any(n.uncertain for n in patch.notes):
                    self._settle(run, patch, exc)
            patches = [p for p in patches if not any(n.uncertain for n in p.notes)]
        for patch in [p for p in patches if not p.payload()]:
            self._settle(run, patch, None)
            patches.remove(patch)
        use_batch = self._batch and self._ensure_facts().get("batch_api", True) and len(patches) > 1
        if use_batch:
            leftover = self._send_batches(patches)
        else:
            leftover = patches
        for patch in leftover:
            try:
                self._send_patch(patch)
            except PlatformError as exc:
                self._settle(run, patch, exc)
            else:
                self._settle(run, patch, None)
        sent_alone = {id(patch) for patch in leftover}
        for patch in patches:
            if id(patch) not in sent_alone:
                self._settle(run, patch, patch.error)

    def _settle(self, run: _Run, patch: _Patch, error: PlatformError | None) -> None:
        for index, result in patch.members:
            notes = [n for n in patch.notes if n.index == index]
            if error is not None:
                run.results[index] = ApplyResult(result.key, "failed", created_id=result.created_id,
                                                 created_key=result.created_key, detail=str(error),
                                                 retryable=error.retryable)
            elif notes and all(n.found for n in notes) and index not in patch.with_fields:
                run.results[index] = ApplyResult(result.key, "skipped", created_id=result.created_id,
                                                 created_key=result.created_key, detail="note already on the record")
            else:
                run.results[index] = result
        if error is None and patch.table == self._table and patch.sys_id in self._known:
            self._known[patch.sys_id].update(patch.fields)

    def _send_patch(self, patch: _Patch) -> None:
        """One PATCH under the retry policy; a retry after a possibly lost answer drops journal entries that
        already landed (a note must not appear twice)."""
        maybe_sent = False

        def attempt() -> None:
            nonlocal maybe_sent
            if maybe_sent:
                self._find_landed_notes(patch.notes, [patch])
            body = patch.payload()
            if not body:
                return
            try:
                self._attempt("PATCH", patch.path, body=body,
                              params={"sysparm_fields": "sys_id", "sysparm_exclude_reference_link": "true"})
            except PlatformError as exc:
                maybe_sent = maybe_sent or isinstance(exc, MaybeApplied)
                raise

        self._policy.call(attempt)

    def _find_landed_notes(self, notes: Sequence[_Note], patches: Sequence[_Patch], found: bool = False) -> None:
        """Mark ``notes`` already in the journal as landed (``found`` too: they were there before this
        apply). One query per chunk of records, on the indexed ``element_id`` plus our tag prefix, so a huge
        ``sys_journal_field`` is never scanned."""
        pending = [n for n in notes if not n.landed]
        if not pending:
            return
        owner = {id(n): p.sys_id for p in patches for n in p.notes}
        ids = list(dict.fromkeys(owner[id(n)] for n in pending))
        landed: set[tuple[str, str]] = set()
        for start in range(0, len(ids), JOURNAL_CHUNK):
            chunk = ",".join(query_value(i, in_list=True) for i in ids[start:start + JOURNAL_CHUNK])
            for row in self._select("sys_journal_field", f"element_idIN{chunk}^valueLIKE{TAG_PREFIX}",
                                    ["element_id", "value"]):
                value = str(row.get("value", ""))
                for note in pending:
                    if note.tag in value and row.get("element_id") == owner[id(note)]:
                        landed.add((owner[id(note)], note.tag))
        for note in pending:
            if (owner[id(note)], note.tag) in landed:
                note.landed = True
                note.found = found

    def _send_batches(self, patches: list[_Patch]) -> list[_Patch]:
        """Send ``patches`` through the Batch API in chunks; returns those to send one by one (the Batch API
        is unavailable, or items stayed unserviced). Each patch that got an answer carries ``error``."""
        leftover: list[_Patch] = []
        for start in range(0, len(patches), self._batch_size):
            chunk = patches[start:start + self._batch_size]
            if self._ensure_facts().get("batch_api", True) is False:
                leftover.extend(chunk)
                continue
            queue = chunk
            for _ in range(BATCH_ROUNDS):
                if not queue:
                    break
                try:
                    queue = self._batch_round(queue)
                except (ClientError, PermissionDenied, NotFound):
                    # The Batch API is switched off or not allowed for this user: one PATCH per record.
                    self._ensure_facts()["batch_api"] = False
                    break
                except PlatformError as exc:
                    for patch in queue:
                        patch.error = exc
                    queue = []
            leftover.extend(queue)
        return leftover

    def _batch_round(self, queue: list[_Patch]) -> list[_Patch]:
        """One Batch API call; returns the patches to try again (unserviced or a retryable item error)."""
        maybe_sent = False

        def attempt() -> tuple[dict[str, _Patch], _Answer | None]:
            nonlocal maybe_sent
            if maybe_sent:
                self._find_landed_notes([n for p in queue for n in p.notes], queue)
            items: dict[str, _Patch] = {}
            requests_: list[dict[str, Any]] = []
            for number, patch in enumerate(queue, start=1):
                body = patch.payload()
                if not body:
                    patch.error = None
                    continue
                items[str(number)] = patch
                requests_.append({
                    "id": str(number), "method": "PATCH",
                    "url": f"/api/now{patch.path}?sysparm_fields=sys_id&sysparm_exclude_reference_link=true",
                    "headers": [{"name": "Content-Type", "value": "application/json"},
                                {"name": "Accept", "value": "application/json"}],
                    "body": base64.b64encode(json.dumps(body).encode("utf-8")).decode("ascii"),
                    "exclude_response_headers": True,
                })
            if not requests_:
                return items, None
            try:
                answer = self._attempt("POST", "/v1/batch",
                                       body={"batch_request_id": str(int(time.time() * 1000)), "rest_requests": requests_})
            except PlatformError as exc:
                maybe_sent = maybe_sent or isinstance(exc, MaybeApplied)
                raise
            return items, answer

        items, answer = self._policy.call(attempt)
        if answer is None:
            return []
        data = answer.data if isinstance(answer.data, dict) else {}
        serviced = data.get("serviced_requests")
        if not isinstance(serviced, list):
            raise UnexpectedResponse("batch answer has no serviced_requests", status=answer.status,
                                     method="POST", path="/api/now/v1/batch")
        again: list[_Patch] = []
        answered: set[str] = set()
        for item in serviced:
            if not isinstance(item, dict) or str(item.get("id")) not in items:
                continue
            patch = items[str(item["id"])]
            answered.add(str(item["id"]))
            error = _item_error(item, patch)
            if error is not None and error.retryable:
                again.append(patch)
                continue
            patch.error = error
        for ident in data.get("unserviced_requests") or []:
            if str(ident) in items and str(ident) not in answered:
                again.append(items[str(ident)])
                answered.add(str(ident))
        # An item the answer does not mention at all is treated like an unserviced one.
        again.extend(patch for ident, patch in items.items() if ident not in answered)
        return again


# -- answers and errors ---------------------------------------------------------------------------


def _parse_url(url: str) -> tuple[str, bool]:
    """``(host[/path], use_ssl)`` from the instance URL; plain http only for a loopback simulator."""
    if not url or not url.strip():
        raise SettingsError("ServiceNow URL is empty")
    text = url.strip()
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    if parts.username or parts.password:
        raise SettingsError("put ServiceNow credentials in the username/password settings, not in the URL")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"ServiceNow URL must be https://<instance>, not {parts.scheme}://")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise SettingsError("ServiceNow URL must use https (plain http only for a simulator on 127.0.0.1)")
    host = parts.netloc + parts.path.rstrip("/")
    return host, parts.scheme == "https"


def _int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _failure(row: Resolution, message: str, method: str, path: str, status: int | None = None,
             retry_after: float | None = None) -> PlatformError:
    """The error of a row of ServiceNow's retry table; :class:`MaybeApplied` when the row says a write may have
    been carried out (``re-read``): it was sent and its answer lost."""
    lost = MaybeApplied if row.action is ResponseAction.REREAD and method != "GET" else None
    return error_from(row, message, status=status, method=method, path=path, retry_after=retry_after, error=lost)


def _platform_message(data: Any, status: int) -> str:
    """ServiceNow's own ``error.message`` (never the rest of the body: it may hold personal data)."""
    message = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            message = error.get("message")
        elif isinstance(error, str):
            message = error
    if not isinstance(message, str) or not message.strip():
        return f"HTTP {status} without an error message"
    return _shorten(" ".join(message.split()), MESSAGE_LIMIT)


def _json(body: bytes) -> tuple[bool, Any]:
    if not body.strip():
        return True, None
    try:
        return True, json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False, None


def error_for(status: int, headers: Any, data: Any, method: str, path: str) -> PlatformError | None:
    """The typed error for a non-2xx status (the retry table's rows), or None for success."""
    if 200 <= status < 300:
        return None
    message = _platform_message(data, status)
    retry_after = parse_retry_after(headers.get("Retry-After")) if headers is not None else None
    return _failure(resolve_status(status, retry_after, SERVICENOW_TABLE), message, method, path, status, retry_after)


def _answer(response: requests.Response, method: str, path: str) -> _Answer:
    """Map one HTTP response to an answer or a typed error."""
    status = response.status_code
    parsed, data = _json(response.content)
    error = error_for(status, response.headers, data if parsed else None, method, path)
    if error is not None:
        raise error
    if status == 202 and data is None:
        raise _failure(SERVICENOW_TABLE[EMPTY_202], "", method, path, status=status)
    if not parsed or "html" in (response.headers.get("Content-Type") or "").lower():
        raise _failure(SERVICENOW_TABLE[UNREADABLE_2XX], "answer is not JSON (maintenance page?)", method, path,
                       status=status)
    if status != 204 and data is None and method == "GET":
        raise _failure(SERVICENOW_TABLE[UNREADABLE_2XX], "empty answer", method, path, status=status)
    next_link = response.links.get("next", {}).get("url")
    return _Answer(status, response.headers, data, next_link)


def _item_error(item: dict[str, Any], patch: _Patch) -> PlatformError | None:
    """The typed error of one Batch API item (its body is base64 JSON)."""
    status = _int(item.get("status_code")) or 0
    try:
        raw = base64.b64decode(str(item.get("body") or ""), validate=False)
    except (ValueError, TypeError):
        raw = b""
    _, data = _json(raw)
    headers = {str(h.get("name")): str(h.get("value")) for h in item.get("headers") or [] if isinstance(h, dict)}
    return error_for(status, headers, data, "PATCH", "/api/now" + patch.path)


def _failed(key: str, exc: BaseException) -> ApplyResult:
    retryable = bool(getattr(exc, "retryable", False))
    return ApplyResult(key, "failed", detail=str(exc), retryable=retryable)


__all__ = ["ServiceNowPlatform", "QueryValueError", "PagingStalled", "MaybeApplied", "query_value", "query_time", "error_for"]
