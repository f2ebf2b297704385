"""Request bodies written into issues: ``fields`` and ``update`` operations with Jira's validation and
per-field errors, entity properties and comments."""

from __future__ import annotations

import copy
import re
from typing import Any

from connector.sim.jira.adf import adf_from_text, adf_problem, adf_to_text
from connector.sim.jira.catalogue import (
    DC_RESPONDERS_FIELD,
    MAJOR_INCIDENT_FIELD,
    RESPONDERS_FIELD,
    SERVICES_FIELD,
    STAGE_FIELD,
    TEAM_FIELD,
    TEAM_GROUP_FIELD,
)
from connector.sim.jira.errors import HttpError, fail
from connector.sim.jira.site import Issue, JiraSite


class FieldWriter:
    """Writes REST bodies into the issues of ``site``."""

    def __init__(self, site: JiraSite) -> None:
        self.site = site

    def text_input(self, value: Any, version: int, field_name: str) -> dict[str, Any] | None:
        """A rich-text field value from a REST body: ADF on v3, string on v2."""
        """A rich-text field value from a REST body: ADF on v3, string on v2."""
        if value is None:
            return None
        if version == 3:
            if adf_problem(value) is not None:
                raise fail(400, errors={field_name: "Operation value must be an Atlassian Document (see the "
                                                     "Atlassian Document Format)"})
            return dict(copy.deepcopy(value))
        if not isinstance(value, str):
            raise fail(400, errors={field_name: "Operation value must be a string"})
        return adf_from_text(value) if value else None

    def apply_fields(self, st: Issue, fields: dict[str, Any], version: int, creating: bool) -> None:
        """Set ``fields`` of a create or edit body, reporting every invalid field at once."""
        errors: dict[str, str] = {}
        for name, value in fields.items():
            try:
                self.apply_field(st, name, value, version, creating)
            except HttpError as exc:
                field_errors = exc.response.body.get("errors") if isinstance(exc.response.body, dict) else None
                if not field_errors:
                    raise
                # Jira reports every invalid field at once, not just the first.
                errors.update(field_errors)
        if errors:
            raise fail(400, errors=errors)

    def apply_field(self, st: Issue, name: str, value: Any, version: int, creating: bool) -> None:
        """Set one field from a REST body, or Jira's 400 for that field."""
        if name == "summary":
            if not isinstance(value, str) or not value.strip():
                raise fail(400, errors={"summary": "You must specify a summary of the issue."})
            if len(value) > 255:
                raise fail(400, errors={"summary": "Summary must be less than 255 characters."})
            st["summary"] = value
        elif name == "description":
            st["description"] = self.text_input(value, version, "description")
        elif name == "project":
            if not creating:
                raise fail(400, errors={"project": "Field 'project' cannot be set. It is not on the appropriate "
                                                    "screen, or unknown."})
        elif name == "issuetype":
            found = self.site.find_issue_type(value) if isinstance(value, dict) else None
            if found is None:
                raise fail(400, errors={"issuetype": "Specify a valid issue type"})
            st["issuetype"] = found["id"]
        elif name == "priority":
            found = self.site.find_priority(value) if isinstance(value, dict) else None
            if found is None:
                raise fail(400, errors={"priority": "Specify the Priority (id or name) in the string format"})
            st["priority"] = found["id"]
        elif name == "components":
            if not isinstance(value, list):
                raise fail(400, errors={"components": "expected 'components' to be an array"})
            st["components"] = [self._component(item) for item in value]
        elif name == "labels":
            st["labels"] = self._labels(value)
        elif name in ("reporter", "assignee"):
            st[name] = self._user(value, name)
        elif name == MAJOR_INCIDENT_FIELD and self.site.major_incident_field:
            # JSM's major incident entity field is set by the major incident action and the Incidents API
            # (POST .../incident/{issueId}/major), not through the issue's fields: a REST write of it is refused
            # like any field that is not on the edit screen (the exact wording is unverified).
            raise fail(400, errors={name: f"Field '{name}' cannot be set. It is not on the appropriate screen, or "
                                          "unknown. Use the Incidents API to change the major incident status."})
        elif name == RESPONDERS_FIELD and self.site.flavour == "cloud":
            # Responders are added and removed through the Incidents API (responder/add, responder/remove); a REST
            # write of the entity field is refused like the major incident field's (the wording is unverified).
            raise fail(400, errors={name: f"Field '{name}' cannot be set. It is not on the appropriate screen, or "
                                          "unknown. Use the Incidents API to change the responders."})
        elif name == SERVICES_FIELD and self.site.flavour == "cloud":
            st["custom"][name] = self._services(value, name)
        elif name == TEAM_GROUP_FIELD:
            st["custom"][name] = self._group(value, name)
        elif name == DC_RESPONDERS_FIELD and self.site.flavour == "dc":
            if value is not None and not isinstance(value, list):
                raise fail(400, errors={name: "expected an array of users"})
            st["custom"][name] = [u for u in (self._user(item, name) for item in value or []) if u is not None]
        elif name == TEAM_FIELD and self.site.flavour == "cloud":
            if value is not None and (not isinstance(value, str) or value not in self.site.teams):
                raise fail(400, errors={name: f"Team '{value}' does not exist. Specify a team ID."})
            st["custom"][name] = value
        elif name == "duedate":
            if value is not None and (not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value)):
                raise fail(400, errors={name: "Error parsing date string: " + str(value)})
            st["duedate"] = value
        elif name == STAGE_FIELD:
            if value is not None and not isinstance(value, str):
                raise fail(400, errors={name: "Operation value must be a string"})
            if isinstance(value, str) and len(value) > 255:
                raise fail(400, errors={name: "Text is too long. Please shorten it to 255 characters or less."})
            st["custom"][name] = value or None
        else:
            raise fail(400, errors={name: f"Field '{name}' cannot be set. It is not on the appropriate screen, or "
                                           "unknown."})

    def _services(self, value: Any, name: str) -> list[str]:
        """Affected services by service id (``[{"id": ...}]``); an unknown id is Jira's 400."""
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) and isinstance(v.get("id"), str) for v in value):
            raise fail(400, errors={name: "Specify the affected services as an array of objects with an 'id'."})
        unknown = [v["id"] for v in value if v["id"] not in self.site.services]
        if unknown:
            raise fail(400, errors={name: f"Service '{unknown[0]}' does not exist."})
        return list(dict.fromkeys(v["id"] for v in value))

    def _group(self, value: Any, name: str) -> str | None:
        """A group picker value (``{"name"}``, or ``{"groupId"}`` on Cloud); an unknown group is Jira's 400."""
        if value is None:
            return None
        if not isinstance(value, dict):
            raise fail(400, errors={name: "expected an object with the group's 'name'"})
        wanted = value.get("name")
        if wanted is None and value.get("groupId") and self.site.flavour == "cloud":
            found = next((g for g in self.site.groups.values() if g["groupId"] == value["groupId"]), None)
        else:
            found = self.site.groups.get(str(wanted or "").lower())
        if found is None:
            raise fail(400, errors={name: f"Group '{wanted or value.get('groupId')}' does not exist."})
        return str(found["name"])

    def _component(self, item: Any) -> str:
        if isinstance(item, dict):
            if "name" in item:
                self.site.component_id(str(item["name"]))
                return str(item["name"])
            if "id" in item:
                for name, cid in self.site.components.items():
                    if cid == str(item["id"]):
                        return name
        raise fail(400, errors={"components": f"Component with id '{item}' does not exist."})

    def _labels(self, value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail(400, errors={"labels": "expected 'labels' to be an array of strings"})
        for label in value:
            if " " in label:
                raise fail(400, errors={"labels": f"The label '{label}' contains spaces which is invalid."})
            if len(label) > 255:
                raise fail(400, errors={"labels": "The label is too long."})
        out: list[str] = []
        for label in value:
            if label not in out:
                out.append(label)
        return out

    def apply_update(self, st: Issue, update: dict[str, Any], version: int, in_transition: bool = False) -> None:
        """Apply the ``update`` operations of a body (``set``, ``add``, ``remove``). ``in_transition``: the
        ``update`` of a transition, whose comment ``properties`` the simulator does not honour (see
        :meth:`append_comment`)."""
        for name, operations in update.items():
            if not isinstance(operations, list):
                raise fail(400, errors={name: "Operations must be an array."})
            for operation in operations:
                if not isinstance(operation, dict) or len(operation) != 1:
                    raise fail(400, errors={name: "Each operation must have exactly one verb."})
                verb, value = next(iter(operation.items()))
                self._apply_operation(st, name, verb, value, version, in_transition)

    def _apply_operation(self, st: Issue, name: str, verb: str, value: Any, version: int,
                         in_transition: bool = False) -> None:
        if name == "labels":
            if verb == "set":
                st["labels"] = self._labels(value)
            elif verb == "add":
                for label in self._labels([value]):
                    if label not in st["labels"]:
                        st["labels"].append(label)
            elif verb == "remove":
                st["labels"] = [label for label in st["labels"] if label != value]
            else:
                raise fail(400, errors={name: f"Unsupported operation '{verb}'."})
        elif name == "components":
            if verb == "set":
                st["components"] = [self._component(item) for item in value or []]
            elif verb == "add":
                comp = self._component(value)
                if comp not in st["components"]:
                    st["components"].append(comp)
            elif verb == "remove":
                comp = self._component(value)
                st["components"] = [c for c in st["components"] if c != comp]
            else:
                raise fail(400, errors={name: f"Unsupported operation '{verb}'."})
        elif name == "comment":
            if verb != "add" or not isinstance(value, dict):
                raise fail(400, errors={name: f"Unsupported operation '{verb}'."})
            self.append_comment(st, value, version, with_properties=not in_transition)
        elif verb == "set":
            self.apply_field(st, name, value, version, creating=False)
        else:
            raise fail(400, errors={name: f"Field '{name}' does not support the '{verb}' operation."})

    def apply_properties(self, st: Issue, properties: Any) -> None:
        """Store the ``properties`` list of a body."""
        if properties is None:
            return
        if not isinstance(properties, list):
            raise fail(400, "'properties' must be an array.")
        for prop in properties:
            if not isinstance(prop, dict) or not isinstance(prop.get("key"), str) or "value" not in prop:
                raise fail(400, "Each property must have a 'key' and a 'value'.")
            self.check_property_key(prop["key"])
            st["properties"][prop["key"]] = copy.deepcopy(prop["value"])

    def check_property_key(self, key: str) -> None:
        """Jira's 400 for an empty or too long property key."""
        if not key or len(key) > 255:
            raise fail(400, "The property key cannot be empty or longer than 255 characters.")

    def _user(self, value: Any, field_name: str) -> str | None:
        """accountId for a user given in a REST body (Cloud: accountId only; DC: name or key)."""
        if value is None:
            return None
        if not isinstance(value, dict):
            raise fail(400, errors={field_name: "expected an object"})
        if self.site.flavour == "cloud":
            if "accountId" not in value and ("name" in value or "key" in value):
                raise fail(400, errors={field_name: "'name' and 'key' are not supported in GDPR strict mode; "
                                                     "identify the user by 'accountId'."})
            account = value.get("accountId")
            if account is None:
                return None
            user = self.site.users.get(str(account))
        else:
            ident = value.get("name") or value.get("key")
            if ident is None:
                return None
            user = next((u for u in self.site.users.values() if str(ident).lower() in
                         (u["name"].lower(), str(u.get("key", "")).lower())), None)
        if user is None:
            raise fail(400, errors={field_name: f"User '{next(iter(value.values()), '')}' does not exist."})
        return str(user["accountId"])

    def append_comment(self, st: Issue, body: dict[str, Any], version: int,
                       with_properties: bool = True) -> dict[str, Any]:
        """Add a comment from a REST body (ADF on v3, text on v2), within the per-issue limit.

        Without ``with_properties`` the body's ``properties`` are dropped: whether Jira honours
        ``sd.public.comment`` inside a transition's ``update.comment`` is not documented (the spec leaves the
        comment free-form), so the simulator takes the unfavourable reading and the comment is public."""
        text = body.get("body")
        if version == 3:
            if text is None or adf_problem(text) is not None:
                raise fail(400, errors={"comment": "Comment body is not valid!"})
            if not adf_to_text(text).strip() and not text.get("content"):
                raise fail(400, errors={"comment": "Comment body can not be empty!"})
            stored = copy.deepcopy(text)
        else:
            if not isinstance(text, str):
                raise fail(400, errors={"comment": "Comment body is not valid!"})
            if not text.strip():
                raise fail(400, errors={"comment": "Comment body can not be empty!"})
            stored = adf_from_text(text)
        properties: dict[str, Any] = {}
        for prop in (body.get("properties") or []) if with_properties else []:
            if not isinstance(prop, dict) or not isinstance(prop.get("key"), str):
                raise fail(400, "Each property must have a 'key' and a 'value'.")
            properties[prop["key"]] = copy.deepcopy(prop.get("value"))
        visibility = body.get("visibility")
        if visibility is not None and (not isinstance(visibility, dict) or visibility.get("type") not in
                                       ("group", "role")):
            raise fail(400, errors={"visibility": "Visibility type must be 'group' or 'role'."})
        self.site.check_limit(st, "comments", len(st["comments"]))
        return self.site.add_comment(st, stored, properties, copy.deepcopy(visibility))
