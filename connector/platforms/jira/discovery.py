"""What the Jira adapter learns about a site: its flavour, the custom fields it uses (the major incident flag by
schema type, the stage field by name, affected services), link types and issue types."""

from __future__ import annotations

import re
from typing import Any

from connector.core.settings import SettingsError
from connector.core.write_settings import JiraWrite
from connector.platforms.jira.client import JiraClient
from connector.platforms.jira.jql import jql_string

DISCOVERY_VERSION = 3
SERVICES_FIELD_TYPE = "com.atlassian.jira.plugins.service-entity:service-entity-field-cftype"
RESPONDERS_FIELD_TYPE = "com.atlassian.jira.modules.servicemanagement.responders-entity:responders-entity-field-cftype"
GROUP_PICKERS = ("com.atlassian.jira.plugin.system.customfieldtypes:grouppicker",
                 "com.atlassian.jira.plugin.system.customfieldtypes:multigrouppicker")
USER_PICKERS = ("com.atlassian.jira.plugin.system.customfieldtypes:userpicker",
                "com.atlassian.jira.plugin.system.customfieldtypes:multiuserpicker")
TEAM_FIELDS = ("com.atlassian.teams:rm-teams-custom-field-team",
               "com.atlassian.jira.plugin.system.customfieldtypes:atlassian-team")
"""The Atlassian Team field (developer.atlassian.com/platform/teams/components/team-field-in-jira-rest-api)."""
FINGERPRINT = ("major_field_type", "stage_field_name", "link_type", "issue_type", "review_issue_type",
               "review_task_type", "review_fallback_type", "change_issue_type", "review_link_type",
               "change_link_type", "team_field_name", "responders_field_name")
"""The write settings discovery depends on."""


class JiraDiscovery:
    """The site's facts, found once and kept by the state store (see :meth:`discover`)."""

    def __init__(self, client: JiraClient, write: JiraWrite, project: str) -> None:
        self._client = client
        self._write = write
        self._project = project
        self.facts: dict[str, Any] | None = None
        """The discovery made or handed over, if any."""

    def fingerprint(self) -> dict[str, Any]:
        """The settings discovery depends on: a cached discovery made under other settings is not reused."""
        return {"version": DISCOVERY_VERSION, "url": self._client.base_url, "project": self._project,
                "flavour": self._client.flavour_setting, **{n: getattr(self._write, n) for n in FINGERPRINT}}

    def discover(self, cached: dict[str, Any] | None) -> dict[str, Any]:
        """Site facts: flavour, caller time zone, custom field ids (major incident by schema type, stage by
        name, affected services), link types and issue types. With ``cached`` (made under the same
        settings) no request is sent. Transitions differ per issue and are read at write time."""
        client = self._client
        if cached is not None and cached.get("config") == self.fingerprint():
            self.facts = cached
            client.flavour = str(cached["flavour"])
            return cached
        if client.flavour_setting == "auto":
            info = client.get("/rest/api/2/serverInfo") or {}
            client.flavour = "cloud" if str(info.get("deploymentType", "")).lower() == "cloud" else "dc"
            server = {"deployment_type": info.get("deploymentType"), "version": info.get("version"),
                      "server_time_zone": info.get("serverTimeZone")}
        else:
            client.flavour = client.flavour_setting
            server = {}
        # The Incidents API is addressed by the site's cloud id (``/_edge/tenant_info``, public on every Cloud site).
        cloud_id = str((client.get("/_edge/tenant_info") or {}).get("cloudId") or "") if client.cloud else ""
        me = client.get(client.api("/myself")) or {}
        fields = self._fields(client.get(client.api("/field")) or [])
        link_types = self._link_types((client.get(client.api("/issueLinkType")) or {}).get("issueLinkTypes") or [])
        issue_types = self._issue_types(client.get(client.api("/issuetype")) or [])
        disc: dict[str, Any] = {
            "config": self.fingerprint(),
            "flavour": client.flavour,
            "server": server,
            # Kept for diagnostics: JQL time bounds are epoch milliseconds, which do not depend on it.
            "time_zone": me.get("timeZone"),
            "me": me.get("accountId") if client.cloud else me.get("name"),
            "fields": fields,
            "link_types": link_types,
            "issue_types": issue_types,
            "cloud_id": cloud_id or None,
            # What the Incidents API refused on this site (a Standard plan answers 403 to Premium methods),
            # learned when it happens and kept with the facts.
            "refused": [],
        }
        self.facts = disc
        return disc

    def incidents_api(self, method: str) -> str | None:
        """The Incidents API base path (``/jsm/incidents/cloudId/<id>/v1``) when the site has it and has not
        refused ``method`` (``major``, ``responders``, ``stakeholders``) before; None otherwise (Data Center,
        no cloud id, or refused)."""
        facts = self.ensure()
        cloud_id = facts.get("cloud_id")
        if not self._client.cloud or not cloud_id or method in (facts.get("refused") or []):
            return None
        return f"/jsm/incidents/cloudId/{cloud_id}/v1"

    def refuse(self, method: str) -> None:
        """Remember that the site refused an Incidents API ``method`` (kept in the facts the store saves)."""
        refused = self.ensure().setdefault("refused", [])
        if method not in refused:
            refused.append(method)

    def ensure(self) -> dict[str, Any]:
        """The facts, discovered now if nothing was discovered or handed over yet."""
        return self.facts if self.facts is not None else self.discover(None)

    def field(self, role: str) -> dict[str, Any] | None:
        """The discovered custom field of ``role`` (``major``, ``stage``, ``services``, ``responders``, ``team``,
        ``dc_responders``), if any."""
        found: dict[str, Any] | None = (self.facts or {}).get("fields", {}).get(role)
        return found

    def known(self, kind: str, role: str) -> dict[str, Any] | None:
        """A discovered link type (``kind="link_types"``) or issue type (``"issue_types"``) of ``role``, if any
        (nothing is discovered here)."""
        found: dict[str, Any] | None = ((self.facts or {}).get(kind) or {}).get(role)
        return found

    def _fields(self, fields: list[dict[str, Any]]) -> dict[str, Any]:
        def describe(item: dict[str, Any] | None) -> dict[str, Any] | None:
            if item is None:
                return None
            schema = item.get("schema") or {}
            number = schema.get("customId")
            if number is None:
                found = re.search(r"(\d+)$", str(item.get("id", "")))
                number = found.group(1) if found else None
            clause = f"cf[{number}]" if number is not None else jql_string(item.get("name", ""))
            return {"id": str(item["id"]), "name": item.get("name"), "clause": clause, "type": schema.get("type"),
                    "custom": schema.get("custom")}

        major_type = self._write.major_field_type
        stage_name = (self._write.stage_field_name or "").strip().lower()
        major = next((f for f in fields if major_type and (f.get("schema") or {}).get("custom") == major_type), None)
        stage = next((f for f in fields if f.get("custom") and stage_name
                      and str(f.get("name", "")).strip().lower() == stage_name), None)
        services = next((f for f in fields if (f.get("schema") or {}).get("custom") == SERVICES_FIELD_TYPE), None)
        responders = next((f for f in fields if (f.get("schema") or {}).get("custom") == RESPONDERS_FIELD_TYPE), None)

        def named(name: str | None, types: tuple[str, ...]) -> dict[str, Any] | None:
            wanted = (name or "").strip().lower()
            return next((f for f in fields if wanted and f.get("custom") and str(f.get("name", "")).strip().lower()
                         == wanted and (f.get("schema") or {}).get("custom") in types), None)

        team = named(self._write.team_field_name, GROUP_PICKERS + (TEAM_FIELDS if self._client.cloud else ()))
        # Data Center has no JSM responders: a user picker the manager is added to
        dc_responders = None if self._client.cloud else named(self._write.responders_field_name, USER_PICKERS)
        return {"major": describe(major), "stage": describe(stage), "services": describe(services),
                "responders": describe(responders) if self._client.cloud else None, "team": describe(team),
                "dc_responders": describe(dc_responders), "duedate": any(f.get("id") == "duedate" for f in fields)}

    def _link_types(self, link_types: list[dict[str, Any]]) -> dict[str, Any]:
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
                                f"{self._client.base_url}; available: {available}")
        relates = pick("Relates") or child
        review = pick(self._write.review_link_type) or relates
        change = pick(self._write.change_link_type) or relates
        return {"child": child, "review": review, "change": change}

    def _issue_types(self, issue_types: list[dict[str, Any]]) -> dict[str, Any]:
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
                "review": pick(self._write.review_issue_type),
                "task": pick(self._write.review_task_type, self._write.review_fallback_type),
                "change": pick(self._write.change_issue_type)}


__all__ = ["DISCOVERY_VERSION", "JiraDiscovery", "SERVICES_FIELD_TYPE"]
