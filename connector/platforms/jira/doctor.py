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
        for role, setting in (("incident", "issue_type"), ("task", "review_task_type"), ("change", "change_issue_type")):
            found = disc["issue_types"].get(role)
            checks.append((f"issue type {role}", found is not None,
                           f"{found['name']} ({found['id']})" if found else f"{getattr(self._write, setting)!r} not found",
                           "" if found else f"add the issue type to the project or set write.{setting}"))
        checks += self._jsm_checks(disc)
        if self._write.project and self._write.project != self._project:
            checks.append(("write.project", True, f"{self._write.project!r} in the mapping is not read: the project "
                           f"is {self._project!r} (jira.project, MIM_JIRA_PROJECT)", ""))
        return checks

    def team_target(self) -> str:
        """Where the team goes on this site, in words."""
        disc = self._discovery.ensure()
        team = disc["fields"].get("team")
        via = self._write.team_via
        if via == "responders" and disc["fields"].get("responders") and disc.get("cloud_id"):
            return "responders"
        if via != "none" and team:
            return "field"
        return "none"

    def _jsm_checks(self, disc: dict[str, Any]) -> list[DoctorCheck]:
        """Where the team, the manager, the stakeholders, the affected services and the review go on this site."""
        fields = disc["fields"]
        out: list[DoctorCheck] = []
        target = self.team_target()
        team = fields.get("team")
        if target == "responders":
            detail = (f"JSM responders ({fields['responders']['id']}) through the Incidents API: the team as an "
                      "Atlassian team" + (", the manager as a user" if self._write.manager_responder else ""))
        elif target == "field":
            field_kind = str(team.get("custom") or "").rsplit(":", 1)[-1] if team else ""
            detail = f"the team field {team['name']} ({team['id']}, {field_kind})" if team else ""
            manager = fields.get("dc_responders")
            if manager and self._write.manager_responder:
                detail += f"; the manager also in {manager['name']} ({manager['id']})"
        else:
            detail = "not written" + (" (write.team_via: none)" if self._write.team_via == "none" else "")
        fix = "" if target != "none" or self._write.team_via == "none" else (
            "add a group picker custom field named " + repr(self._write.team_field_name or "Major incident team")
            + " (and set write.team_field_name), or use JSM responders on Jira Cloud")
        out.append(("team and responders", target != "none" or self._write.team_via == "none", detail, fix))
        if self._write.stakeholders:
            how = ("JSM stakeholders (Incidents API stakeholder/add)" if self._discovery.incidents_api("stakeholders")
                   else "request participants (servicedeskapi), who are told of public comments")
            out.append(("stakeholders", True, how, ""))
        if self._write.affected_services:
            services = fields.get("services")
            out.append(("affected services", True, f"{services['name']} ({services['id']})" if services else
                        "no Affected services field on this site: not listed", ""))
        if self._write.post_incident_review:
            review = disc["issue_types"].get("review")
            out.append(("post-incident review", True, f"{review['name']} ({review['id']}) holds the review tasks"
                        if review else f"{self._write.review_issue_type!r} not on this site: the review tasks are "
                        "linked to the major incident", ""))
        return out

    def directory(self, people: Sequence[str], groups: Sequence[str]) -> list[DoctorCheck]:
        """One check: every person of the process file is a user of the site (Cloud: exactly one account answers
        to the name), and every group is what the team goes to: an Atlassian team of the site's organisation for
        JSM responders and the Team field, a group for a group picker."""

        target = self.team_target()
        kind = str((self._discovery.ensure()["fields"].get("team") or {}).get("custom") or "")

        def known(group: str) -> bool:
            if target == "responders" or (target == "field" and not kind.endswith("grouppicker")):
                return self._directory.team_id(group) is not None  # JSM responders and the Team field: teams
            if target == "field":
                return self._directory.group(group) is not None
            return self._directory.group(group) is not None or self._directory.team_id(group) is not None

        def check() -> str:
            missing = [f"person {p!r}" for p in dict.fromkeys(people) if not self._directory.user_exists(p)]
            what = {"responders": "team"}.get(target, "group")
            missing += [f"{what} {g!r}" for g in dict.fromkeys(groups) if not known(g)]
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
