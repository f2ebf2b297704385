"""The JSM Incidents REST API (Cloud, v1 beta), served on the site as ``/jsm/incidents/cloudId/{cloudId}/v1/...``:
the major incident status, responders, stakeholders and a post-incident review's primary incident.

No OpenAPI document of this API is public (``../shared/specs/README.md``); the simulator follows
developer.atlassian.com/cloud/incidents/rest/ as summarised in ``../shared/reference/jira.md`` §7-§8:

* paths take the **numeric issue id** (a key is not found), of an incident;
* ``POST .../major`` ``{"majorIncident": true}`` (a boolean, required), ``GET .../major``;
* ``GET .../responder``, ``POST .../responder/add`` and ``.../responder/remove`` with ``{"responders": [{"ari":
  "ari:cloud:identity::user/<accountId>"}]}`` (user or team ARIs);
* ``POST .../stakeholder/add`` and ``.../stakeholder/remove`` with ``{"stakeholders": [{"ari": ...}]}``;
* ``GET /post-incident-review/{issueID}/primary-incident``.

Methods marked "License required: Premium or Enterprise" (major incident status, post-incident review) answer
403 on a Standard site; the wording of that answer is not documented (see ``errors.PREMIUM_ONLY``). What a POST
answers on success is not documented either: the simulator answers 204.
"""

from __future__ import annotations

from typing import Any

from connector.sim.base import SimRequest, SimResponse
from connector.sim.jira.catalogue import (
    ARI_TEAM,
    ARI_USER,
    MAJOR_INCIDENT_FIELD,
    MAJOR_INCIDENT_VALUE,
    PIR_TYPE,
    RESPONDERS_FIELD,
)
from connector.sim.jira.errors import ISSUE_NOT_FOUND, PREMIUM_ONLY, fail
from connector.sim.jira.params import json_body
from connector.sim.jira.site import Issue, JiraSite


class IncidentsApi:
    """The Incidents API of a Cloud site."""

    def __init__(self, site: JiraSite) -> None:
        self.site = site

    def _incident(self, cloud_id: str, issue_id: str, premium: bool = False, kind: str = "10001") -> Issue:
        if cloud_id != self.site.cloud_id:
            raise fail(404, f"Site '{cloud_id}' not found.")
        st = self.site.issues.get(issue_id)  # by numeric id only: a key is not an issue id here
        if st is None:
            raise fail(404, ISSUE_NOT_FOUND)
        if premium and (self.site.plan != "premium" or not self.site.major_incident_field):
            raise fail(403, PREMIUM_ONLY)
        if st["issuetype"] != kind:
            what = "a post-incident review" if kind == PIR_TYPE else "an incident"
            raise fail(400, f"Issue {st['key']} is not {what}.")
        return st

    def major(self, request: SimRequest, cloud_id: str, issue_id: str) -> SimResponse:
        """``GET|POST .../incident/{issue_id}/major`` (Premium and Enterprise)."""
        st = self._incident(cloud_id, issue_id, premium=True)
        if request.method == "GET":
            return SimResponse(200, {"majorIncident": st["custom"].get(MAJOR_INCIDENT_FIELD) == MAJOR_INCIDENT_VALUE})
        if request.method != "POST":
            return SimResponse(405, None)
        body = json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("majorIncident"), bool):
            raise fail(400, errors={"majorIncident": "majorIncident must be a boolean."})
        st["custom"][MAJOR_INCIDENT_FIELD] = MAJOR_INCIDENT_VALUE if body["majorIncident"] else None
        self.site.touch(st)
        return SimResponse(204)

    def responders(self, request: SimRequest, cloud_id: str, issue_id: str, verb: str | None = None) -> SimResponse:
        """``GET .../responder``; ``POST .../responder/add|remove`` (every plan)."""
        st = self._incident(cloud_id, issue_id)
        current: list[str] = list(st["custom"].get(RESPONDERS_FIELD) or [])
        if verb is None:
            if request.method != "GET":
                return SimResponse(405, None)
            return SimResponse(200, {"responders": [{"ari": ari} for ari in current]})
        if request.method != "POST":
            return SimResponse(405, None)
        aris = self._aris(request, "responders", teams=True)
        st["custom"][RESPONDERS_FIELD] = _changed(current, aris, verb)
        self.site.touch(st)
        return SimResponse(204)

    def stakeholders(self, request: SimRequest, cloud_id: str, issue_id: str, verb: str) -> SimResponse:
        """``POST .../stakeholder/add|remove``: users only."""
        st = self._incident(cloud_id, issue_id)
        if request.method != "POST":
            return SimResponse(405, None)
        aris = self._aris(request, "stakeholders", teams=False)
        st["stakeholders"] = _changed(list(st["stakeholders"]), aris, verb)
        self.site.touch(st)
        return SimResponse(204)

    def primary_incident(self, request: SimRequest, cloud_id: str, issue_id: str) -> SimResponse:
        """``GET .../post-incident-review/{issue_id}/primary-incident`` (Premium and Enterprise): the incident
        the review is linked to, as an ``IncidentDTO``."""
        review = self._incident(cloud_id, issue_id, premium=True, kind=PIR_TYPE)
        if request.method != "GET":
            return SimResponse(405, None)
        for link_id in review["links"]:
            link = self.site.links.get(link_id)
            other = link and self.site.issues.get(link.source if link.target == review["id"] else link.target)
            if other and other["issuetype"] == "10001":
                return SimResponse(200, self._dto(other))
        raise fail(404, "The post-incident review is not linked to an incident.")

    def _dto(self, st: Issue) -> dict[str, Any]:
        status = self.site.status(st["status"])
        return {"summary": st["summary"], "status": {"id": status["id"], "name": status["name"]},
                "majorIncident": {"fieldId": MAJOR_INCIDENT_FIELD, "value": st["custom"].get(MAJOR_INCIDENT_FIELD)},
                "responders": {"fieldId": RESPONDERS_FIELD, "value": list(st["custom"].get(RESPONDERS_FIELD) or [])}}

    def _aris(self, request: SimRequest, key: str, teams: bool) -> list[str]:
        """The ARIs of a body ``{key: [{"ari": ...}]}``, each a known user (or, with ``teams``, team)."""
        body = json_body(request)
        items = body.get(key) if isinstance(body, dict) else None
        if not isinstance(items, list) or not items or not all(isinstance(i, dict) and isinstance(i.get("ari"), str)
                                                              for i in items):
            raise fail(400, errors={key: f"'{key}' must be a non-empty array of objects with an 'ari'."})
        out = []
        for item in items:
            ari = item["ari"]
            if ari.startswith(ARI_USER) and ari[len(ARI_USER):] in self.site.users:
                out.append(ari)
            elif teams and ari.startswith(ARI_TEAM) and ari[len(ARI_TEAM):] in self.site.teams:
                out.append(ari)
            else:
                raise fail(400, errors={key: f"'{ari}' is not a {'user or team' if teams else 'user'} of this site."})
        return out


def _changed(current: list[str], aris: list[str], verb: str) -> list[str]:
    if verb == "add":
        return current + [ari for ari in dict.fromkeys(aris) if ari not in current]
    return [ari for ari in current if ari not in aris]


__all__ = ["IncidentsApi"]
