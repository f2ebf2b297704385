"""Jira transport: one session, Basic ``email:api_token`` (Cloud) or a Bearer personal access token (Data
Center), REST v3 or v2 by flavour, every answer mapped through the retry table, every request counted and run
under the retry policy."""

from __future__ import annotations

import email.utils
import logging
import re
from datetime import datetime, timezone
from typing import Any, Callable, Literal
from urllib.parse import urlsplit

import requests
from pydantic import SecretStr
from requests.auth import AuthBase, HTTPBasicAuth

from connector.core.settings import SettingsError, is_loopback
from connector.platforms.errors import PlatformError, ResponseAction
from connector.platforms.retry import (
    RETRY_TABLE,
    UNREADABLE_2XX,
    RetryPolicy,
    error_for_status,
    error_from,
    parse_retry_after,
    resolve_exception,
)

log = logging.getLogger("mim.jira")  # under "mim", so the redacting handler sees every record

Flavour = Literal["auto", "cloud", "dc"]


class BearerAuth(AuthBase):
    """``Authorization: Bearer <PAT>`` (Data Center). Its repr never shows the token."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(token=**********)"


class JiraClient:
    """One Jira site over HTTP. ``flavour`` is ``"cloud"``, ``"dc"`` or ``"auto"`` (then :attr:`flavour` is set by
    discovery). Every request has a timeout and verifies TLS unless ``verify`` says otherwise (a CA bundle path
    is accepted); redirects are never followed (they could carry the credentials elsewhere)."""

    def __init__(self, url: str, email: str | None, token: str | SecretStr, *, flavour: Flavour = "auto",
                 verify: bool | str = True, timeout: float = 30.0, policy: RetryPolicy | None = None) -> None:
        if flavour not in ("auto", "cloud", "dc"):
            raise SettingsError(f"jira.flavour must be auto, cloud or dc, not {flavour!r}")
        if not re.match(r"^https?://[^/\s]+", url or ""):
            raise SettingsError("jira.url (MIM_JIRA_URL) must be an http(s) URL such as https://example.atlassian.net")
        host = urlsplit(url).hostname or ""
        if url.lower().startswith("http://") and not is_loopback(url):
            # basic auth and tokens would travel in clear text
            raise SettingsError("jira.url (MIM_JIRA_URL) must use https:// (plain http only for 127.0.0.1/localhost)")
        self.base_url = url.rstrip("/")
        self.verify = verify
        self.timeout = timeout
        self.policy = policy or RetryPolicy()
        self.flavour_setting: Flavour = flavour
        self.flavour: str | None = None if flavour == "auto" else flavour
        """``cloud`` or ``dc`` once known (configured, or after discovery)."""
        self.sent = 0
        self.server_time: datetime | None = None
        """The platform's clock as of the last answer (its ``Date`` header), if it sent one."""
        self._email = email
        self._token = token if isinstance(token, SecretStr) else SecretStr(token)
        self._session = requests.Session()
        self._session.headers.update({"Accept": "application/json", "User-Agent": "mim-connector"})

    @property
    def cloud(self) -> bool:
        """Whether the site is Jira Cloud (REST v3, ADF bodies, ``accountId`` users)."""
        return self.flavour == "cloud"

    def close(self) -> None:
        """Release connections."""
        self._session.close()

    def api(self, path: str) -> str:
        """``path`` under the REST API of the flavour (v3 on Cloud, v2 on Data Center)."""
        return f"/rest/api/{3 if self.cloud else 2}{path}"

    def _auth(self) -> AuthBase:
        flavour = self.flavour or ("cloud" if self._email else "dc")
        if flavour == "cloud":
            return HTTPBasicAuth(self._email or "", self._token.get_secret_value())
        return BearerAuth(self._token)

    def send(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        """One HTTP request, its answer as JSON (None when empty) or a typed :class:`PlatformError`."""
        self.sent += 1
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

    def now(self) -> datetime:
        """The platform's clock as of the last answer, else this machine's: search lag is the platform's, so
        waiting for it is measured on its clock."""
        return self.server_time or datetime.now(timezone.utc)

    def _read(self, response: requests.Response, method: str, path: str) -> Any:
        status = response.status_code
        stamp = response.headers.get("Date")
        if stamp:
            try:
                self.server_time = email.utils.parsedate_to_datetime(stamp).astimezone(timezone.utc)
            except (TypeError, ValueError):
                pass
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
        message = error_message(response)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if status in (429, 503):
            reason = response.headers.get("RateLimit-Reason") or response.headers.get("X-RateLimit-Reason")
            log.info("Jira %s on %s %s (reason %s, remaining %s, reset %s, retry after %s)", status, method, path,
                     reason or "-", response.headers.get("X-RateLimit-Remaining", "-"),
                     response.headers.get("X-RateLimit-Reset", "-"), retry_after)
        if status == 401 and not message:
            message = "authentication failed: check the email and API token"
        raise error_for_status(status, message, retry_after=retry_after, method=method, path=path)

    def call(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None,
             already_done: Callable[[], Any] | None = None) -> Any:
        """A request under the retry policy.

        For writes that are not idempotent (create, comment, transition) ``already_done`` is asked before
        re-sending after a failure the retry table marks ``re-read`` (timeout, dropped connection, 5xx: the
        request may have been carried out); when it returns a value, that value is the answer. 429 and 503
        with ``Retry-After`` are refusals, so those are re-sent directly.
        """
        ambiguous = False

        def attempt() -> Any:
            nonlocal ambiguous
            if ambiguous and already_done is not None:
                done = already_done()
                if done is not None:
                    return done
            try:
                return self.send(method, path, params, body)
            except PlatformError as exc:
                ambiguous = ambiguous or exc.action is ResponseAction.REREAD
                raise

        return self.policy.call(attempt)

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """A GET under the retry policy."""
        return self.call("GET", path, params=params)


def error_message(response: requests.Response) -> str:
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


__all__ = ["BearerAuth", "Flavour", "JiraClient", "error_message"]
