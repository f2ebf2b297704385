"""The ServiceNow adapter as the sync cycle sees it: a thin façade over the client, the reader, discovery,
the field translation and the writer of this package."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Sequence

from pydantic import SecretStr

from connector.core.actions import Action
from connector.core.mapping import Mapping
from connector.core.settings import ServiceNowSettings, SettingsError
from connector.core.ticket import Ticket
from connector.core.write_settings import ServiceNowWrite
from connector.platforms.base import ApplyResult, DoctorCheck, ProcessNeeds, Resolver, Watermark
from connector.platforms.observe import HttpObserver, observe_session
from connector.platforms.retry import RetryPolicy
from connector.platforms.servicenow.client import ServiceNowClient
from connector.platforms.servicenow.discovery import ServiceNowDiscovery
from connector.platforms.servicenow.doctor import ServiceNowDoctor
from connector.platforms.servicenow.fields import ServiceNowFields
from connector.platforms.servicenow.patches import PatchSender
from connector.platforms.servicenow.read import DERIVED_MARKER, ServiceNowReader
from connector.platforms.servicenow.recheck import Recheck
from connector.platforms.servicenow.records import IncidentTable, RecordCache
from connector.platforms.servicenow.write import ServiceNowWriter


class ServiceNowPlatform:
    """A ServiceNow instance as the sync cycle sees it (see :class:`connector.platforms.base.Platform`).

    ``url`` is the instance (``https://acme.service-now.com``; plain ``http`` only for a loopback
    simulator). Basic auth, or the OAuth password grant (with refresh) when ``client_id`` is given.
    ``verify`` is True or a CA bundle path. ``batch`` and ``page_size`` override the mapping's ``write:``
    settings. ``clock`` says when a proposal is made (``proposed_on``). The adapter is meant for one thread:
    ServiceNow serialises the requests of a session anyway.
    """

    name = "servicenow"

    def __init__(self, url: str, username: str, password: str | SecretStr, mapping: Mapping, *,
                 client_id: str | None = None, client_secret: str | SecretStr | None = None,
                 verify: bool | str = True, timeout: float = 30.0, policy: RetryPolicy | None = None,
                 batch: bool | None = None, page_size: int | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self._client = ServiceNowClient(url, username, password, client_id=client_id, client_secret=client_secret,
                                        verify=verify, timeout=timeout, policy=policy)
        self.mapping = mapping
        self.username = username
        self.base_url: str = self._client.base_url
        write = mapping.write
        if not isinstance(write, ServiceNowWrite):
            raise SettingsError(f"{mapping.path} is a {mapping.platform} mapping, not a ServiceNow one")
        if "^NQ" in write.poll_filter:
            raise SettingsError("write.poll_filter must not contain ^NQ (it is repeated in each keyset group)")
        use_batch = write.batch if batch is None else batch
        own_marker = write.marker_field if write.marker_field != write.correlation_field else None
        table = IncidentTable.from_mapping(mapping, write.table, extra=(write.correlation_field,),
                                           optional=(write.stage_field, own_marker, write.business_impact_field))
        cache = RecordCache(table.id_field)
        self._reader = ServiceNowReader(self._client, mapping, write, table, cache, max(1, page_size or write.page_size))
        self._discovery = ServiceNowDiscovery(self._client, self._reader, mapping, write, table, use_batch)
        self._doctor = ServiceNowDoctor(self._client, self._reader, mapping, write, table, use_batch)
        fields = ServiceNowFields(self._client, mapping, write, self._discovery)
        sender = PatchSender(self._client, self._reader, self._discovery, table, cache, use_batch, write.batch_size,
                             Recheck(self._reader, table, cache, fields))
        self._writer = ServiceNowWriter(self._client, write, table, cache, self._discovery, fields, sender, clock)

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
        auth = "oauth" if self._client.oauth else "basic"
        return f"ServiceNowPlatform(url={self.base_url!r}, username={self.username!r}, auth={auth!r})"

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent so far: every attempt, token requests included (a Batch API call counts once)."""
        return self._client.requests

    def observe_http(self, observer: HttpObserver) -> None:
        """Report every HTTP request of this adapter to ``observer`` (metrics; see connector/platforms/observe.py)."""
        observe_session(self._client._session, self.name, observer)

    def close(self) -> None:
        """Release the session's connections."""
        self._client.close()

    def discover(self, cached: dict[str, Any] | None) -> dict[str, Any]:
        """Whether the stage field exists on the incident table, plus room for the group and user lookups
        ``apply`` makes (see :meth:`ServiceNowDiscovery.discover`). With ``cached`` no request is sent."""
        return self._discovery.discover(cached)

    def fetch_changed(self, since: Watermark | None, horizon: datetime) -> Iterator[dict[str, Any]]:
        """Incidents updated since the watermark minus the overlap (or ``horizon``), keyset-paged
        (see :meth:`ServiceNowReader.fetch_changed`). A quiet poll is one request."""
        return self._reader.fetch_changed(since, horizon)

    def fetch_history(self, since: datetime, fields: Sequence[str]) -> Iterator[dict[str, Any]]:
        """Incidents opened at or after ``since`` with only the canonical ``fields`` (the baselines' warm-up,
        see :meth:`ServiceNowReader.fetch_history`)."""
        return self._reader.fetch_history(since, fields)

    def fetch_marked(self) -> list[dict[str, Any]]:
        """Incidents carrying a ``mim:`` marker whose major incident state is proposed, accepted or rejected,
        and that are not closed or canceled."""
        return self._reader.fetch_marked()

    def fetch_followups(self, mi_ids: Sequence[str],
                        changes: dict[str, str | None] | None = None) -> dict[str, dict[str, Any]]:
        """The change and the review tasks of each major incident (see
        :meth:`ServiceNowReader.fetch_followups`)."""
        return self._reader.fetch_followups(mi_ids, changes)

    def to_ticket(self, raw: dict[str, Any]) -> Ticket:
        """A raw incident as a canonical ticket, through the mapping. Its ``marker`` is the one the reader
        derived (``_marker``) whatever the mapping reads it from: a mapping of an earlier version reads
        ``correlation_id``, which may hold another tool's value."""
        ticket = self.mapping.to_ticket(raw, base_url=self.base_url)
        derived = raw.get(DERIVED_MARKER)
        if derived is not None and ticket.marker != (derived or None):
            ticket.marker = derived or None
        return ticket

    def apply(self, actions: Sequence[Action], resolve: Resolver, uncertain: frozenset[str] = frozenset()) -> list[ApplyResult]:
        """Perform ``actions`` idempotently and report each (see :meth:`ServiceNowWriter.apply`)."""
        return self._writer.apply(actions, resolve, uncertain)

    def doctor_checks(self, discovery: dict[str, Any]) -> list[DoctorCheck]:
        """Read-only checks for ``mim doctor`` (see :meth:`ServiceNowDoctor.checks`)."""
        return self._doctor.checks(discovery)

    def needs_checks(self, needs: ProcessNeeds) -> list[DoctorCheck]:
        """What the rules and the process file need from the instance (see
        :meth:`ServiceNowDoctor.needs_checks`)."""
        return self._doctor.needs_checks(needs)


__all__ = ["ServiceNowPlatform"]
