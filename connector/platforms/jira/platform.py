"""The Jira adapter as the sync cycle sees it: a thin façade over the client, discovery, the reader, the field
derivation and the writer of this package."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator, Sequence

from pydantic import SecretStr

from connector.core.actions import Action
from connector.core.mapping import Mapping
from connector.core.settings import JiraSettings, SettingsError
from connector.core.ticket import Ticket
from connector.core.write_settings import JiraWrite
from connector.platforms.base import ApplyResult, DoctorCheck, ProcessNeeds, Resolver, Watermark
from connector.platforms.jira.adf import adf_plain_text, is_adf
from connector.platforms.jira.cache import IssueCache
from connector.platforms.jira.client import Flavour, JiraClient
from connector.platforms.jira.directory import JiraDirectory
from connector.platforms.jira.discovery import JiraDiscovery
from connector.platforms.jira.doctor import PERMISSIONS, JiraDoctor
from connector.platforms.jira.fields import JiraFields
from connector.platforms.jira.issues import IssueWriter
from connector.platforms.jira.read import JiraReader
from connector.platforms.jira.search import JiraSearch
from connector.platforms.jira.write import JiraWriter
from connector.platforms.observe import HttpObserver, observe_session
from connector.platforms.retry import RetryPolicy


class JiraPlatform:
    """Jira Cloud / Data Center as the sync cycle sees it (implements :class:`~connector.platforms.base.Platform`).

    ``flavour`` is ``"cloud"``, ``"dc"`` or ``"auto"`` (read from ``/serverInfo`` at discovery). Cloud
    authenticates with Basic ``email:api_token`` and talks REST v3 (ADF bodies, ``accountId`` users); Data
    Center with ``Authorization: Bearer <personal access token>`` and REST v2 (plain-text bodies, user
    ``name``). Every request has a timeout and verifies TLS unless ``verify`` says otherwise (a CA bundle
    path is accepted). ``policy`` is the retry policy (default :class:`RetryPolicy`).

    Derived keys added to a raw issue before the mapping reads it (``to_ticket``): ``_major``, ``_parent``,
    ``_stage``, ``_marker``, ``_change`` and ``_ci`` (see :meth:`derived_fields`).
    """

    name = "jira"

    PERMISSIONS = PERMISSIONS
    """Project permissions the write-back needs."""

    def __init__(self, url: str, email: str | None, token: str | SecretStr, mapping: Mapping, *,
                 project: str = "ITSM", flavour: Flavour = "auto", verify: bool | str = True, timeout: float = 30.0,
                 policy: RetryPolicy | None = None) -> None:
        self._client = JiraClient(url, email, token, flavour=flavour, verify=verify, timeout=timeout, policy=policy)
        self.base_url = self._client.base_url
        self.mapping = mapping
        self.project = project
        self.verify = verify
        self.timeout = timeout
        self.policy = self._client.policy
        write = mapping.write
        if not isinstance(write, JiraWrite):
            raise SettingsError(f"{mapping.path} is a {mapping.platform} mapping, not a Jira one")
        cache = IssueCache()
        self._discovery = JiraDiscovery(self._client, write, project)
        self._directory = JiraDirectory(self._client, self._discovery, write.teams, write.org_id)
        self._fields = JiraFields(mapping, write, self._discovery)
        self._reader = JiraReader(self._client, JiraSearch(self._client, write.page_size), mapping, write,
                                  self._discovery, self._fields, cache, project)
        issues = IssueWriter(self._client, self._reader, mapping, write, self._discovery, cache, self._directory)
        self._writer = JiraWriter(issues, self._fields, self._discovery, cache, write, project)
        self._doctor = JiraDoctor(self._client, self._discovery, self._reader, write, project, self._directory)

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
        return f"JiraPlatform({self.base_url!r}, project={self.project!r}, flavour={self.flavour or 'auto'!r})"

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent so far, retries included."""
        return self._client.sent

    @property
    def flavour(self) -> str | None:
        """``cloud`` or ``dc`` once known (configured, or after discovery)."""
        return self._client.flavour

    def observe_http(self, observer: HttpObserver) -> None:
        """Report every HTTP request of this adapter to ``observer`` (metrics; see connector/platforms/observe.py)."""
        observe_session(self._client._session, self.name, observer)

    def close(self) -> None:
        """Release connections."""
        self._client.close()

    def discover(self, cached: dict[str, Any] | None) -> dict[str, Any]:
        """Site facts: flavour, caller time zone, custom field ids, link types and issue types (see
        :meth:`JiraDiscovery.discover`). With ``cached`` (made under the same settings) no request is sent."""
        return self._discovery.discover(cached)

    def changed_jql(self, start: datetime | int) -> str:
        """The delta-poll JQL from ``start`` (epoch milliseconds, unquoted: zone-free and exact)."""
        return self._reader.changed_jql(start)

    def fetch_changed(self, since: Watermark | None, horizon: datetime) -> Iterator[dict[str, Any]]:
        """Issues updated since the watermark minus the overlap (or since ``horizon``), oldest first, every
        page, de-duplicated by ``(id, fields.updated)``. A quiet poll is one request."""
        return self._reader.fetch_changed(since, horizon)

    def fetch_history(self, since: datetime, fields: Sequence[str]) -> Iterator[dict[str, Any]]:
        """Incidents created at or after ``since`` with only what the canonical ``fields`` need (the baselines'
        warm-up, see :meth:`JiraReader.fetch_history`)."""
        return self._reader.fetch_history(since, fields)

    def search(self, jql: str, fields: list[str] | None = None) -> list[dict[str, Any]]:
        """Every issue matching ``jql`` (built with :func:`jql_string` for values), with the ``mim`` property."""
        return self._reader.search(jql, fields)

    def fetch_marked(self) -> list[dict[str, Any]]:
        """Open issues flagged as major incidents whose ``mim`` property carries our marker (state rebuild),
        including those a human un-flagged (they still carry the ``declared_label``)."""
        return self._reader.fetch_marked()

    def fetch_followups(self, mi_ids: Sequence[str],
                        changes: dict[str, str | None] | None = None) -> dict[str, dict[str, Any]]:
        """The change and review issues linked to each major incident, from one search of the major incidents
        themselves (see :meth:`JiraReader.fetch_followups`)."""
        return self._reader.fetch_followups(mi_ids, changes)

    def derived_fields(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The ``_``-prefixed keys the mapping reads (see :meth:`JiraFields.derived`)."""
        return self._fields.derived(raw)

    def to_ticket(self, raw: dict[str, Any]) -> Ticket:
        """A raw issue as a canonical ticket: rich text (Cloud ADF) as plain text, derived keys, then the
        mapping."""
        record = dict(raw)
        fields = raw.get("fields")
        if isinstance(fields, dict) and any(is_adf(v) for v in fields.values()):
            record["fields"] = {k: adf_plain_text(v) if is_adf(v) else v for k, v in fields.items()}
        record.update(self.derived_fields(raw))
        return self.mapping.to_ticket(record, base_url=self.base_url)

    def apply(self, actions: Sequence[Action], resolve: Resolver,
              uncertain: frozenset[str] = frozenset()) -> list[ApplyResult]:
        """Perform ``actions`` in order and report each (see :meth:`JiraWriter.apply`)."""
        return self._writer.apply(actions, resolve, uncertain)

    def doctor_checks(self, discovery: dict[str, Any]) -> list[DoctorCheck]:
        """Read-only checks for ``mim doctor`` (see :meth:`JiraDoctor.checks`)."""
        return self._doctor.checks(discovery)

    def needs_checks(self, needs: ProcessNeeds) -> list[DoctorCheck]:
        """Read-only: whether every person and group the process file names exists on the site (see
        :meth:`JiraDoctor.directory`); the permissions are part of :meth:`doctor_checks`."""
        return self._doctor.directory(needs.people, needs.groups)


__all__ = ["JiraPlatform"]
