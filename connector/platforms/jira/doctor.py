"""The read-only checks of ``mim doctor`` for a Jira site."""

from __future__ import annotations

from typing import Any, Sequence

from connector.core.write_settings import JiraWrite
from connector.platforms.base import DoctorCheck, doctor_check
from connector.platforms.errors import ClientError, NotFound, PermissionDenied
from connector.platforms.jira.client import JiraClient
from connector.platforms.jira.directory import JiraDirectory
from connector.platforms.jira.discovery import JiraDiscovery
from connector.platforms.jira.read import JiraReader

PERMISSIONS = ("BROWSE_PROJECTS", "CREATE_ISSUES", "EDIT_ISSUES", "LINK_ISSUES", "ADD_COMMENTS",
               "TRANSITION_ISSUES", "ASSIGN_ISSUES", "RESOLVE_ISSUES", "SERVICEDESK_AGENT")
"""Project permissions the write-back needs: resolving children needs ``RESOLVE_ISSUES`` (the resolution of the
resolve transition), internal comments and the JSM APIs need a JSM agent (``SERVICEDESK_AGENT``)."""


class JiraDoctor:
    """Checks the project, the permissions, the mapped fields, the custom fields, link and issue types."""

    def __init__(self, client: JiraClient, discovery: JiraDiscovery, reader: JiraReader, write: JiraWrite,
                 project: str, directory: JiraDirectory) -> None:
        self._client = client
        self._directory = directory
        self._discovery = discovery
        self._reader = reader
        self._write = write
        self._project = project

    def checks(self, discovery: dict[str, Any]) -> list[DoctorCheck]:
        """Read-only checks for ``mim doctor``: the project, the permissions the write-back needs, every
        mapped field, the major incident and stage fields, the link type and the issue types."""
        checks: list[DoctorCheck] = []
        self._discovery.facts = self._discovery.facts or discovery or None
        disc = self._discovery.ensure()
        checks.append(doctor_check(f"project {self._project}", self._check_project,
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

    def directory(self, people: Sequence[str], groups: Sequence[str]) -> list[DoctorCheck]:
        """One check: every person of the process file is a user of the site (Cloud: exactly one account answers
        to the name), and every group is a group or, on Cloud, an Atlassian team of the site's organisation."""

        def check() -> str:
            missing = [f"person {p!r}" for p in dict.fromkeys(people) if not self._directory.user_exists(p)]
            missing += [f"group {g!r}" for g in dict.fromkeys(groups)
                        if self._directory.group(g) is None and self._directory.team_id(g) is None]
            if missing:
                raise ClientError("not on the site: " + ", ".join(missing))
            return f"{len(set(people))} people and {len(set(groups))} groups found"

        return [doctor_check("people and groups", check,
                             "create them on the site, or name them in the process file as the site knows them "
                             "(Cloud: account id or email)")]

    def _check_project(self) -> str:
        project = self._client.get(self._client.api(f"/project/{self._project}")) or {}
        return f"{project.get('name', self._project)} is readable"

    def _check_permissions(self) -> str:
        try:
            answer = self._client.get(self._client.api("/mypermissions"),
                                      {"projectKey": self._project, "permissions": ",".join(PERMISSIONS)}) or {}
        except NotFound:
            return "not checked (this server has no /mypermissions)"
        granted = answer.get("permissions") or {}
        missing = [p for p in PERMISSIONS if not (granted.get(p) or {}).get("havePermission")]
        if missing:
            raise PermissionDenied(f"missing {', '.join(missing)} in {self._project}")
        return "all granted: " + ", ".join(PERMISSIONS)

    def _check_fields(self) -> str:
        known = {str(f.get("id")) for f in self._client.get(self._client.api("/field")) or []}
        wanted = [f for f in self._reader.fields_wanted() if f not in ("issuelinks",)]
        missing = [f for f in wanted if f not in known]
        if missing:
            raise ClientError(f"no field {', '.join(missing)}")
        return f"{len(wanted)} fields found"


__all__ = ["JiraDoctor", "PERMISSIONS"]
