"""People, groups and teams of a Jira site: Cloud users by account id (``/user/search`` finds a process file's
``alice.martin``, email or display name), Data Center users by name; groups through ``/groups/picker``; Atlassian
teams (what JSM responders and the Team field name) through the Teams public REST API of the site's organisation.
What is found is kept with the site facts (the state store saves them), so a cycle does not look a person or a
team up again until the facts are read anew (``write.discovery_ttl``)."""

from __future__ import annotations

import re
from typing import Any

from connector.platforms.errors import ClientError, NotFound, PermissionDenied
from connector.platforms.jira.client import JiraClient
from connector.platforms.jira.discovery import JiraDiscovery

ACCOUNT_ID = re.compile(r"^(?:[0-9a-f]{24}|\d+:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
"""Jira Cloud account ids: 24 hex digits (older) or ``<number>:<uuid>``."""
TENANT_QUERY = "query tenantContext($cloudId: ID!) { tenantContexts(cloudIds: [$cloudId]) { orgId } }"
TEAMS_PAGE = 300


class JiraDirectory:
    """Users, groups and teams by the names a process file gives them (answers kept for the run)."""

    def __init__(self, client: JiraClient, discovery: JiraDiscovery, teams: dict[str, str],
                 org_id: str | None) -> None:
        self._client = client
        self._discovery = discovery
        self._configured_teams = {name.lower(): ident for name, ident in teams.items()}
        self._org_id = org_id
        self._groups: dict[str, dict[str, Any] | None] = {}

    # -- users ---------------------------------------------------------------------------------------------

    def user_ref(self, user: str) -> dict[str, str]:
        """How a REST body names ``user``: Data Center by ``name``; Cloud by ``accountId``, looking one up
        (``/user/search``) when the process file names a person by email, user name or display name."""
        if not self._client.cloud:
            return {"name": user}
        return {"accountId": self.account_id(user)}

    def account_id(self, user: str) -> str:
        """The Cloud account id of ``user`` (an account id is taken as it is); :class:`ClientError` when no
        single user matches."""
        if ACCOUNT_ID.match(user):
            return user
        accounts: dict[str, str] = self._discovery.ensure().setdefault("accounts", {})
        if user not in accounts:
            chosen = self._matching_users(user)
            if len(chosen) != 1:
                raise ClientError(f"{'no' if not chosen else len(chosen)} Jira users match {user!r}: name people in the "
                                  "process file by Jira account id or email", method="GET",
                                  path=self._client.api("/user/search"))
            accounts[user] = str(chosen[0]["accountId"])
        return accounts[user]

    def _matching_users(self, user: str) -> list[dict[str, Any]]:
        path = self._client.api("/user/search")
        key = "query" if self._client.cloud else "username"
        found = [u for u in self._client.get(path, {key: user, "maxResults": 10}) or [] if isinstance(u, dict)]
        wanted = user.strip().lower()

        def names(u: dict[str, Any]) -> set[str]:
            email = str(u.get("emailAddress") or "").lower()
            return {email, email.split("@")[0], str(u.get("displayName") or "").lower(),
                    str(u.get("name") or "").lower(), str(u.get("accountId") or "").lower()} - {""}

        exact = [u for u in found if wanted in names(u)]
        return exact or ([] if not self._client.cloud else [u for u in found if u.get("accountId")])

    def user_exists(self, user: str) -> bool:
        """Whether exactly one user of the site answers to ``user``."""
        if self._client.cloud:
            try:
                self.account_id(user)
            except ClientError:
                return False
            return True
        return len(self._matching_users(user)) == 1

    # -- groups --------------------------------------------------------------------------------------------

    def group(self, name: str) -> dict[str, Any] | None:
        """The group named ``name`` (``{"name", "groupId"?}``) or None (``/groups/picker``, exact name)."""
        if name not in self._groups:
            answer = self._client.get(self._client.api("/groups/picker"), {"query": name, "maxResults": 50}) or {}
            found = [g for g in answer.get("groups") or [] if str(g.get("name", "")).lower() == name.lower()]
            self._groups[name] = {k: found[0][k] for k in ("name", "groupId") if k in found[0]} if found else None
        return self._groups[name]

    # -- Atlassian teams -----------------------------------------------------------------------------------

    def team_id(self, name: str) -> str | None:
        """The Atlassian team id of ``name``: from ``write.teams``, else looked up by display name through the
        Teams API of the site's organisation (Cloud only); None when there is no such team (or no way to ask)."""
        configured = self._configured_teams.get(name.lower())
        if configured:
            return configured
        if not self._client.cloud:
            return None
        facts = self._discovery.ensure()
        if "teams" not in facts:
            facts["teams"] = self._load_teams()
        found: str | None = facts["teams"].get(name.lower())
        return found

    def org_id(self) -> str | None:
        """The site's organisation id: ``write.org_id``, else asked of the GraphQL gateway once (kept with the
        site facts)."""
        if self._org_id:
            return self._org_id
        facts = self._discovery.ensure()
        if "org_id" not in facts:
            cloud_id = facts.get("cloud_id")
            org = None
            if cloud_id:
                try:
                    answer = self._client.call("POST", "/gateway/api/graphql",
                                               body={"query": TENANT_QUERY, "variables": {"cloudId": cloud_id}}) or {}
                    contexts = ((answer.get("data") or {}).get("tenantContexts") or [])
                    org = next((str(c["orgId"]) for c in contexts if isinstance(c, dict) and c.get("orgId")), None)
                except (NotFound, PermissionDenied, ClientError):
                    org = None
            facts["org_id"] = org
        found: str | None = facts.get("org_id")
        return found

    def _load_teams(self) -> dict[str, str]:
        org = self.org_id()
        facts = self._discovery.ensure()
        cloud_id = facts.get("cloud_id")
        if not org:
            return {}
        out: dict[str, str] = {}
        cursor: str | None = None
        for _ in range(100):  # 30,000 teams at most: a loop guard, not a limit anyone reaches
            params: dict[str, Any] = {"size": TEAMS_PAGE}
            if cloud_id:
                params["siteId"] = cloud_id
            if cursor:
                params["cursor"] = cursor
            try:
                answer = self._client.get(f"/gateway/api/public/teams/v1/org/{org}/teams", params) or {}
            except (NotFound, PermissionDenied):
                return out
            for team in answer.get("entities") or []:
                if isinstance(team, dict) and team.get("teamId") and team.get("displayName"):
                    out.setdefault(str(team["displayName"]).lower(), str(team["teamId"]))
            cursor = answer.get("cursor") or None
            if not cursor:
                break
        return out


__all__ = ["ACCOUNT_ID", "JiraDirectory"]
