"""ServiceNow transport: pysnow builds the session and the resource URLs; every request is sent here, mapped to
a typed error through ServiceNow's rows of the retry table, counted, and run under the retry policy.

pysnow (0.7.17) is frozen and thin: its ``get`` does not paginate, every error is a bare ``HTTPError`` and
nothing is retried. This is the only module that imports it. Reads page by keyset (:meth:`ServiceNowClient.select`,
a :class:`~connector.platforms.paging.KeysetPaginator`) and follow ``Link rel="next"`` across empty pages.
"""

from __future__ import annotations

import http.cookiejar
import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import parse_qs, urlsplit

import pysnow
import requests
from pydantic import SecretStr
from requests.auth import AuthBase, HTTPBasicAuth

from connector.core.settings import SettingsError
from connector.platforms.errors import AuthenticationError, PlatformError, TransientError, UnexpectedResponse
from connector.platforms.paging import KeysetPaginator, Page, paginate
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
from connector.platforms.servicenow.query import query_value, shorten

PYSNOW_SYSPARMS = ("sysparm_query", "sysparm_limit", "sysparm_offset", "sysparm_display_value",
                   "sysparm_suppress_pagination_header", "sysparm_exclude_reference_link", "sysparm_view",
                   "sysparm_fields")
"""Parameters pysnow adds to every request of a resource; set to None (dropped by requests) unless we mean them."""

MESSAGE_LIMIT = 300
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
TOKEN_PATH = "/oauth_token.do"

Row = dict[str, Any]


class MaybeApplied(TransientError):
    """A write was sent but its answer was lost (500/502/504, a dropped connection, a read timeout): it may
    have been applied, so a retry first looks for its marker or note tag."""


@dataclass
class Answer:
    """One HTTP answer after error mapping: status, headers and the parsed JSON body (None when empty)."""

    status: int
    headers: Any
    data: Any
    next_link: str | None = None

    @property
    def result(self) -> Any:
        """The ``result`` of a Table API answer (a list of rows or one row), if any."""
        return self.data.get("result") if isinstance(self.data, dict) else None


class OAuthToken(AuthBase):
    """Bearer auth with a token from the password grant, fetched and refreshed by the client. Its repr never
    shows a token or a secret."""

    def __init__(self, token_url: str, client_id: str, client_secret: SecretStr) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
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
        """Whether the access token can be used (renewed a minute early, so it does not expire between check
        and use)."""
        return self.access is not None and time.monotonic() < self.expires_at - 60

    def invalidate(self) -> None:
        """Forget the access token (after a 401): the next request fetches a new one."""
        self.access = None


class ServiceNowClient:
    """One ServiceNow instance over HTTP: a pysnow client on a session that keeps no cookie, basic auth or the
    OAuth password grant, every request counted and run under the retry policy."""

    def __init__(self, url: str, username: str, password: str | SecretStr, *, client_id: str | None = None,
                 client_secret: str | SecretStr | None = None, verify: bool | str = True, timeout: float = 30.0,
                 policy: RetryPolicy | None = None) -> None:
        host, use_ssl = parse_url(url)
        if not username or not password:
            raise SettingsError("ServiceNow needs a username and a password")
        self.username = username
        self._password = password if isinstance(password, SecretStr) else SecretStr(password)
        if client_secret is not None and not isinstance(client_secret, SecretStr):
            client_secret = SecretStr(client_secret)
        if client_id and client_secret is None:
            raise SettingsError("ServiceNow OAuth needs a client secret with the client id")
        self._timeout = float(timeout)
        self.policy = policy or RetryPolicy()
        self.requests = 0

        session = requests.Session()
        self.oauth: OAuthToken | None = None
        if client_id and client_secret is not None:
            self.oauth = OAuthToken(("https://" if use_ssl else "http://") + host + TOKEN_PATH, client_id, client_secret)
            session.auth = self.oauth
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

    def close(self) -> None:
        """Release the session's connections."""
        self._session.close()

    # -- one request ---------------------------------------------------------------------------------------

    def call(self, method: str, api_path: str, *, params: dict[str, Any] | None = None,
             body: Any = None, expect: type | None = None) -> Answer:
        """One logical request under the retry policy (each attempt is another request)."""
        return self.policy.call(lambda: self.attempt(method, api_path, params=params, body=body, expect=expect))

    def attempt(self, method: str, api_path: str, *, params: dict[str, Any] | None = None,
                body: Any = None, expect: type | None = None) -> Answer:
        """Send one HTTP request through pysnow and map the answer (the only place that sends, besides the
        OAuth token call). ``expect`` (list or dict) is the type ``result`` must have."""
        if self.oauth is not None and not self.oauth.valid:
            self._fetch_token(self.oauth)
        resource = self._client.resource(api_path=api_path, timeout=self._timeout)
        resource.parameters.add_custom({**dict.fromkeys(PYSNOW_SYSPARMS), **(params or {})})
        captured: list[requests.Response] = []
        path = "/api/now" + api_path
        self.requests += 1
        try:
            # verify per request: requests lets REQUESTS_CA_BUNDLE override the session's own bundle
            resource.request(method, data=None if body is None else json.dumps(body), verify=self._verify,
                             hooks={"response": [lambda response, *args, **kwargs: captured.append(response)]})
        except requests.exceptions.ConnectTimeout as exc:
            raise failure(resolve_exception(exc, SERVICENOW_TABLE), "connection timed out", method, path) from None
        except requests.exceptions.Timeout as exc:
            raise failure(resolve_exception(exc, SERVICENOW_TABLE),
                          f"no answer within {self._timeout:g}s ({type(exc).__name__})", method, path) from None
        except requests.exceptions.ConnectionError as exc:
            raise failure(resolve_exception(exc, SERVICENOW_TABLE), f"connection failed ({type(exc).__name__})",
                          method, path) from None
        except requests.exceptions.RequestException as exc:
            # a body cut short (ChunkedEncodingError) is a lost answer; the table decides every other kind
            row = resolve_exception(exc, SERVICENOW_TABLE)
            raise failure(row, f"{row.message} ({type(exc).__name__})", method, path) from None
        response = captured[-1]
        if response.status_code == 401 and self.oauth is not None:
            self.oauth.invalidate()
        answer = read_answer(response, method, path)
        if expect is not None and not isinstance(answer.result, expect):
            raise failure(SERVICENOW_TABLE[UNREADABLE_2XX], f"answer has no result {expect.__name__}", method, path,
                          status=answer.status)
        return answer

    def _fetch_token(self, oauth: OAuthToken) -> None:
        """Password grant (or refresh grant when a refresh token is held) at ``/oauth_token.do``."""
        form = {"client_id": oauth.client_id, "client_secret": oauth.client_secret.get_secret_value()}
        if oauth.refresh:
            form.update(grant_type="refresh_token", refresh_token=oauth.refresh)
        else:
            form.update(grant_type="password", username=self.username, password=self._password.get_secret_value())
        self.requests += 1
        try:
            response = self._session.post(oauth.token_url, data=form, timeout=self._timeout, verify=self._verify,
                                          headers={"Content-Type": "application/x-www-form-urlencoded"})
        except requests.exceptions.RequestException as exc:
            raise TransientError(f"token request failed ({type(exc).__name__})", method="POST",
                                 path=TOKEN_PATH) from None
        if response.status_code in (400, 401) and oauth.refresh:
            oauth.refresh = None  # an expired refresh token: the next attempt uses the password grant
            raise TransientError("refresh token refused", method="POST", path=TOKEN_PATH)
        if response.status_code in (400, 401):
            raise AuthenticationError("OAuth token request refused (check client id, client secret and user)",
                                      status=response.status_code, method="POST", path=TOKEN_PATH)
        answer = read_answer(response, "POST", TOKEN_PATH)
        data = answer.data if isinstance(answer.data, dict) else {}
        if not data.get("access_token"):
            raise UnexpectedResponse("token answer has no access_token", method="POST", path=TOKEN_PATH)
        oauth.access = str(data["access_token"])
        oauth.refresh = str(data.get("refresh_token") or "") or None
        oauth.expires_at = time.monotonic() + float(data.get("expires_in") or 1800)

    # -- reading tables ------------------------------------------------------------------------------------

    @staticmethod
    def read_params(query: str, fields: Sequence[str], limit: int) -> dict[str, Any]:
        """Table API parameters for a read: raw values, no reference links."""
        return {"sysparm_query": query, "sysparm_fields": ",".join(fields), "sysparm_limit": str(limit),
                "sysparm_display_value": "false", "sysparm_exclude_reference_link": "true"}

    def get_page(self, table: str, params: dict[str, Any]) -> Answer:
        """One page of ``table`` (its ``result`` is a list)."""
        return self.call("GET", f"/table/{table}", params=params, expect=list)

    def pages(self, table: str, first: str, after: Callable[[Row], str], key: Callable[[Row], tuple[str, ...]],
              fields: Sequence[str], limit: int) -> Iterator[list[Row]]:
        """Every page of a keyset-ordered query (a :class:`KeysetPaginator`): ``first`` is the first page's
        query, ``after(row)`` the query for rows after ``row``. An empty page is not the end while
        ``Link rel="next"`` exists; a loop that makes no progress raises ``PagingStalled``."""
        paginator = KeysetPaginator(self.read_params(first, fields, limit),
                                    lambda row: self.read_params(after(row), fields, limit),
                                    lambda link: self._link_params(link, table), key, limit,
                                    where=f"GET /api/now/table/{table}")

        def fetch(params: dict[str, Any]) -> Page:
            answer = self.get_page(table, params)
            return Page(answer.result, link=answer.next_link, total=as_int(answer.headers.get("X-Total-Count")))

        for page in paginate(paginator, fetch):
            yield list(page.rows)

    @staticmethod
    def _link_params(link: str, table: str) -> dict[str, Any]:
        """The query parameters of a ``Link`` URL; only its parameters are used, never its host, so a link
        can never send our credentials elsewhere."""
        parts = urlsplit(link)
        if not parts.path.rstrip("/").endswith(f"/table/{table}"):
            raise UnexpectedResponse("Link header points at another resource", method="GET",
                                     path=f"/api/now/table/{table}")
        return {name: values[-1] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}

    def select(self, table: str, query: str, fields: Sequence[str], limit: int) -> Iterator[Row]:
        """Rows of ``table`` matching ``query`` (no ``^NQ``), every page of ``limit`` rows, keyset by ``sys_id``."""
        id_field = "sys_id"
        fields = list(fields) + ([id_field] if id_field not in fields else [])
        prefix = f"{query}^" if query else ""
        for page in self.pages(table, f"{prefix}ORDERBY{id_field}",
                               lambda row: f"{prefix}{id_field}>{query_value(row.get(id_field, ''))}^ORDERBY{id_field}",
                               lambda row: (str(row.get(id_field, "")),), fields, limit):
            yield from page


# -- answers and errors ---------------------------------------------------------------------------


def parse_url(url: str) -> tuple[str, bool]:
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


def as_int(value: Any) -> int | None:
    """``value`` as an integer, or None."""
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def failure(row: Resolution, message: str, method: str, path: str, status: int | None = None,
            retry_after: float | None = None) -> PlatformError:
    """The error of a row of ServiceNow's retry table; :class:`MaybeApplied` when the row says a write may have
    been carried out (``re-read``): it was sent and its answer lost."""
    lost = MaybeApplied if row.action is ResponseAction.REREAD and method != "GET" else None
    return error_from(row, message, status=status, method=method, path=path, retry_after=retry_after, error=lost)


POLICY_DETAILS = ("Data Policy Exception",)
"""Starts of an ``error.detail`` that name what the instance refused (field labels, no record data): a data
policy answers ``"message": "Operation Failed"`` and says which fields are mandatory in the detail."""


def _platform_message(data: Any, status: int) -> str:
    """ServiceNow's own ``error.message`` (never the rest of the body: it may hold personal data), and the
    detail of a data policy refusal, which names the mandatory fields."""
    message = detail = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            message, detail = error.get("message"), error.get("detail")
        elif isinstance(error, str):
            message = error
    if not isinstance(message, str) or not message.strip():
        return f"HTTP {status} without an error message"
    text = " ".join(message.split())
    if isinstance(detail, str) and detail.strip().startswith(POLICY_DETAILS):
        text = f"{text}: {' '.join(detail.split())}"
    return shorten(text, MESSAGE_LIMIT)


def parse_json(body: bytes) -> tuple[bool, Any]:
    """``(parsed, data)`` of a body: an empty body parses as None; ``parsed`` is False when it is not JSON."""
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
    return failure(resolve_status(status, retry_after, SERVICENOW_TABLE), message, method, path, status, retry_after)


def read_answer(response: requests.Response, method: str, path: str) -> Answer:
    """Map one HTTP response to an answer or a typed error."""
    status = response.status_code
    parsed, data = parse_json(response.content)
    error = error_for(status, response.headers, data if parsed else None, method, path)
    if error is not None:
        raise error
    if status == 202 and data is None:
        raise failure(SERVICENOW_TABLE[EMPTY_202], "", method, path, status=status)
    if not parsed or "html" in (response.headers.get("Content-Type") or "").lower():
        raise failure(SERVICENOW_TABLE[UNREADABLE_2XX], "answer is not JSON (maintenance page?)", method, path,
                      status=status)
    if status != 204 and data is None and method == "GET":
        raise failure(SERVICENOW_TABLE[UNREADABLE_2XX], "empty answer", method, path, status=status)
    next_link = response.links.get("next", {}).get("url")
    return Answer(status, response.headers, data, next_link)


__all__ = ["Answer", "MaybeApplied", "OAuthToken", "ServiceNowClient", "as_int", "error_for", "failure", "parse_json",
           "parse_url", "read_answer"]
