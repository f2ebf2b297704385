"""Who may call the instance: basic auth as the configured user, or a bearer token from the OAuth password and
refresh-token grants (``/oauth_token.do``), which expire on the instance's clock."""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import datetime, timedelta
from urllib.parse import parse_qs

from connector.sim.base import SimRequest, SimResponse
from connector.sim.servicenow.errors import error
from connector.sim.servicenow.instance import Instance

TOKEN_LIFETIME = 1799


class Credentials:
    """The instance user's password and the OAuth tokens handed out (the user name and clock are the
    instance's)."""

    def __init__(self, instance: Instance, password: str) -> None:
        self.instance = instance
        self.password = password
        self._tokens: dict[str, datetime] = {}
        self._refresh_tokens: set[str] = set()

    def authorised(self, request: SimRequest) -> bool:
        """Whether the request carries the user's basic credentials or a live bearer token."""
        scheme, _, credentials = (request.header("Authorization") or "").partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            user, sep, password = decoded.partition(":")
            return bool(sep) and user == self.instance.user and password == self.password
        if scheme.lower() == "bearer":
            expiry = self._tokens.get(credentials.strip())
            return expiry is not None and self.instance.clock() < expiry
        return False

    @staticmethod
    def unauthorised(request: SimRequest) -> SimResponse:
        """The instance's 401."""
        return error(401, "User Not Authenticated", "Required to provide Auth information",
                     {"WWW-Authenticate": 'BASIC realm="Service-now"'})

    def token(self, request: SimRequest) -> SimResponse:
        """``POST /oauth_token.do``: the password and refresh-token grants."""
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        grant = form.get("grant_type")
        if grant == "password":
            granted = form.get("username") == self.instance.user and form.get("password") == self.password
        elif grant == "refresh_token":
            granted = form.get("refresh_token") in self._refresh_tokens
        else:
            return SimResponse(400, {"error": "unsupported_grant_type", "error_description": "access_denied"})
        if not granted:
            return SimResponse(401, {"error": "server_error", "error_description": "access_denied"})
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self._tokens[access] = self.instance.clock() + timedelta(seconds=TOKEN_LIFETIME)
        self._refresh_tokens.add(refresh)
        return SimResponse(200, {"access_token": access, "refresh_token": refresh, "scope": "useraccount",
                                 "token_type": "Bearer", "expires_in": TOKEN_LIFETIME})
