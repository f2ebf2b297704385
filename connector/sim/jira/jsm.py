"""Jira Service Management's servicedeskapi: request comments (public or internal) and request participants (the
Incidents API is :mod:`.incidents`)."""

from __future__ import annotations

from typing import Any

from connector.sim.base import SimRequest, SimResponse
from connector.sim.jira.adf import adf_from_text, adf_to_text
from connector.sim.jira.errors import ISSUE_NOT_FOUND, fail
from connector.sim.jira.params import int_arg, json_body
from connector.sim.jira.site import Issue, JiraSite
from connector.sim.jira.times import epoch_ms, jira_time


class JsmApi:
    """``/rest/servicedeskapi/request/{key}/comment`` and ``.../participant``."""

    def __init__(self, site: JiraSite) -> None:
        self.site = site

    def _servicedesk_comment_dto(self, st: Issue, comment: dict[str, Any]) -> dict[str, Any]:
        user = self.site.users[comment["author"]]
        author: dict[str, Any] = {"accountId": user["accountId"], "emailAddress": user["emailAddress"],
                                  "displayName": user["displayName"], "active": user["active"],
                                  "timeZone": user["timeZone"]}
        if self.site.flavour == "dc":
            author = {"name": user["name"], "key": user["key"], **author}
            del author["accountId"]
        internal = comment["properties"].get("sd.public.comment", {})
        created = comment["created"]
        return {
            "id": comment["id"], "body": adf_to_text(comment["body"]),
            "public": not (isinstance(internal, dict) and internal.get("internal") is True),
            "author": author,
            "created": {"iso8601": created.strftime("%Y-%m-%dT%H:%M:%S+0000"), "jira": jira_time(created),
                        "friendly": created.strftime("%d/%b/%y %I:%M %p"), "epochMillis": epoch_ms(created)},
            "_links": {"self": f"{self.site.base_url}/rest/servicedeskapi/request/{st['id']}/comment/{comment['id']}"},
        }

    def servicedesk_comment(self, request: SimRequest, key: str) -> SimResponse:
        """``GET|POST /rest/servicedeskapi/request/{key}/comment`` (public or internal comments)."""
        st = self.site.get_state(key)
        if st is None:
            raise fail(404, ISSUE_NOT_FOUND)
        if request.method == "GET":
            start = max(0, int_arg(request.arg("start"), 0, "start"))
            limit = max(1, int_arg(request.arg("limit"), 50, "limit"))
            values = [self._servicedesk_comment_dto(st, c) for c in st["comments"]]
            if request.arg("public") == "false":
                values = [v for v in values if not v["public"]]
            elif request.arg("internal") == "false":
                values = [v for v in values if v["public"]]
            page = values[start:start + limit]
            return SimResponse(200, {"size": len(page), "start": start, "limit": limit,
                                     "isLastPage": start + limit >= len(values), "values": page, "_links": {}})
        if request.method != "POST":
            return SimResponse(405, None)
        body = json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("body"), str) or not body["body"].strip():
            return SimResponse(400, {"errorMessage": "Comment body can not be empty!", "i18nErrorMessage": {
                "i18nKey": "sd.comment.empty", "parameters": []}})
        public = body.get("public", True)
        if not isinstance(public, bool):
            return SimResponse(400, {"errorMessage": "'public' must be a boolean.", "i18nErrorMessage": {
                "i18nKey": "sd.comment.public.invalid", "parameters": []}})
        self.site.check_limit(st, "comments", len(st["comments"]))
        comment = self.site.add_comment(st, adf_from_text(body["body"]),
                                        {} if public else {"sd.public.comment": {"internal": True}}, None)
        self.site.touch(st)
        return SimResponse(201, self._servicedesk_comment_dto(st, comment))

    def participants(self, request: SimRequest, key: str) -> SimResponse:
        """``GET|POST /rest/servicedeskapi/request/{key}/participant``: request participants (Cloud
        ``{"accountIds": [...]}``, Data Center ``{"usernames": [...]}``), who are notified of public comments."""
        st = self.site.get_state(key)
        if st is None:
            raise fail(404, ISSUE_NOT_FOUND)
        if request.method == "POST":
            body = json_body(request)
            field = "accountIds" if self.site.flavour == "cloud" else "usernames"
            names = body.get(field) if isinstance(body, dict) else None
            if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
                return SimResponse(400, {"errorMessage": f"'{field}' must be a non-empty array of strings.",
                                         "i18nErrorMessage": {"i18nKey": "sd.participants.invalid", "parameters": []}})
            for name in names:
                user = self.site.users.get(name) if self.site.flavour == "cloud" else self.site.find_user(name)
                if user is None:
                    return SimResponse(400, {"errorMessage": f"User '{name}' does not exist.",
                                             "i18nErrorMessage": {"i18nKey": "sd.user.unknown", "parameters": []}})
                if user["accountId"] not in st["participants"]:
                    st["participants"].append(user["accountId"])
            self.site.touch(st)
        elif request.method != "GET":
            return SimResponse(405, None)
        values = [self._person(self.site.users[a]) for a in st["participants"]]
        return SimResponse(200, {"size": len(values), "start": 0, "limit": 50, "isLastPage": True, "values": values,
                                 "_links": {}})

    def _person(self, user: dict[str, Any]) -> dict[str, Any]:
        person = {"accountId": user["accountId"], "emailAddress": user["emailAddress"],
                  "displayName": user["displayName"], "active": user["active"], "timeZone": user["timeZone"]}
        if self.site.flavour == "dc":
            person = {"name": user["name"], "key": user["key"], **person}
            del person["accountId"]
        return person
