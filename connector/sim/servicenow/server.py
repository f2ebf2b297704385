"""The ServiceNow simulator as one object: :class:`ServiceNowSim` builds the instance and its APIs, declares the
route table, answers requests and serves them over HTTP; :func:`serve` runs one for ``mim simulate
servicenow``."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping

from connector.sim.base import FaultRule, Route, Router, SimRequest, SimResponse, SimServer
from connector.sim.servicenow.batch import BATCH_PATH, BatchApi
from connector.sim.servicenow.errors import not_supported, unknown_path
from connector.sim.servicenow.instance import Instance, Readable
from connector.sim.servicenow.oauth import Credentials
from connector.sim.servicenow.render import Renderer
from connector.sim.servicenow.schema import INCIDENT_FIELDS
from connector.sim.servicenow.tables import AggregateApi, TableApi

TABLE_PATH = "/api/now[/{version:v1|v2}]/table/{table}"
STATS_PATH = "/api/now[/v1]/stats/{table}[/]"
OAUTH_PATH = "/oauth_token.do"


class ServiceNowSim:
    """An in-memory ServiceNow instance behind the Table, Batch, Aggregate and OAuth APIs.

    ``clock`` returns the current time (aware, UTC; default real time). ``cascade_resolve`` makes a
    resolved incident resolve its open children. ``incident_fields`` replaces :data:`INCIDENT_FIELDS`
    (system fields and ``number`` are always there); writes to other incident fields are ignored.
    ``seed`` makes ``sys_id`` values reproducible. ``batch_enabled`` / ``batch_max_items`` control the
    Batch API; ``strict_query`` makes a query naming an unknown field return no rows (as with
    ``glide.invalid_query.returns_no_rows``); ``readable(table, record)`` hides records after paging,
    like ACLs do, so pages can come back short or empty while more rows exist.

    ``roles`` are the API user's roles (default ``admin``, which passes every ACL); the user is a ``sys_user``
    with them in ``sys_user_has_role``. ``hidden_fields`` (table -> fields) are the fields a field ACL hides
    from the user: absent from answers, dropped from queries, and not written. What a REST write may not do
    (field ACLs, choices, references, the resolution data policy) is :mod:`connector.sim.servicenow.policies`.
    Faults added to the server apply to the items of a Batch API call as well.
    """

    def __init__(
        self,
        user: str = "admin",
        password: str = "admin",
        clock: Callable[[], datetime] | None = None,
        cascade_resolve: bool = True,
        incident_fields: Iterable[str] | None = None,
        seed: int = 1,
        *,
        batch_enabled: bool = True,
        batch_max_items: int = 100,
        strict_query: bool = False,
        readable: Readable | None = None,
        roles: Iterable[str] | None = None,
        hidden_fields: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.seed = seed
        self._lock = threading.RLock()
        self._servers: list[SimServer] = []
        self._instance = Instance(user, clock or (lambda: datetime.now(timezone.utc)), cascade_resolve,
                                  INCIDENT_FIELDS if incident_fields is None else tuple(incident_fields), seed,
                                  strict_query, readable, roles, hidden_fields)
        self._credentials = Credentials(self._instance, password)
        self._tables = TableApi(self._instance, Renderer(self._instance))
        self._stats = AggregateApi(self._instance)
        self._batch = BatchApi(lambda request: self.router.dispatch(request, authenticate=False), batch_enabled,
                               batch_max_items, faults=self._item_fault)
        self.router = Router(self.routes(), not_found=unknown_path, wrong_method=not_supported,
                             authorised=self._credentials.authorised, unauthorised=self._credentials.unauthorised)

    @property
    def user(self) -> str:
        """The user basic auth accepts and writes are stamped with."""
        return self._instance.user

    @property
    def password(self) -> str:
        """The user's password."""
        return self._credentials.password

    @property
    def clock(self) -> Callable[[], datetime]:
        """The instance's clock."""
        return self._instance.clock

    @property
    def cascade_resolve(self) -> bool:
        """Whether a resolved incident resolves its open children."""
        return self._instance.cascade_resolve

    @property
    def strict_query(self) -> bool:
        """Whether a query naming an unknown field returns no rows."""
        return self._instance.strict_query

    @property
    def readable(self) -> Readable | None:
        """What the API user may read (``None``: everything)."""
        return self._instance.readable

    @property
    def roles(self) -> set[str]:
        """The API user's roles, as ``sys_user_has_role`` says now."""
        with self._lock:
            return self._instance.policy.roles()

    def grant(self, role: str) -> None:
        """Give the API user a role (as an administrator would)."""
        with self._lock:
            user = next(r for r in self._instance.rows("sys_user") if r.get("user_name") == self.user)
            found = [r for r in self._instance.rows("sys_user_role") if r.get("name") == role]
            role_id = found[0]["sys_id"] if found else self._instance.insert("sys_user_role", {"name": role},
                                                                              trusted=True)["sys_id"]
            self._instance.insert("sys_user_has_role", {"user": user["sys_id"], "role": role_id, "state": "active",
                                                         "inherited": "false"}, trusted=True)

    def add_people(self, people: Iterable[str] = (), groups: Iterable[str] = ()) -> None:
        """Users (by ``user_name``) and groups (by ``name``) that do not exist yet, as a directory sync would
        create them."""
        with self._lock:
            known = {r.get("user_name") for r in self._instance.rows("sys_user")}
            for name in dict.fromkeys(people):
                if name and name not in known:
                    self._instance.insert("sys_user", {"user_name": name, "name": _display_name(name),
                                                       "active": "true"}, trusted=True)
            named = {r.get("name") for r in self._instance.rows("sys_user_group")}
            for name in dict.fromkeys(groups):
                if name and name not in named:
                    self._instance.insert("sys_user_group", {"name": name, "active": "true"}, trusted=True)

    @property
    def batch_enabled(self) -> bool:
        """Whether the Batch API exists."""
        return self._batch.enabled

    @property
    def batch_max_items(self) -> int:
        """Requests a batch serves; the rest come back unserviced."""
        return self._batch.max_items

    def routes(self) -> list[Route]:
        """The instance's endpoints: OAuth, Batch, Aggregate and Table APIs."""
        record = TABLE_PATH + "/{sys_id}[/]"
        table = TABLE_PATH + "[/]"
        tables, check = self._tables, self._tables.check
        return [
            Route("POST", OAUTH_PATH, self._credentials.token, public=True),
            Route("POST", BATCH_PATH, self._batch.batch, serves=lambda groups: self._batch.enabled),
            Route("GET HEAD", STATS_PATH, self._stats.stats),
            Route("GET HEAD", table, tables.list_records, check=check),
            Route("POST", table, tables.create_record, check=check),
            Route("GET HEAD", record, tables.read_record, check=check),
            Route("PUT PATCH", record, tables.write_record, check=check),
            Route("DELETE", record, tables.delete_record, check=check),
        ]

    # -- Python API ------------------------------------------------------------------------------

    def insert(self, table: str, fields: dict[str, Any]) -> dict[str, str]:
        """Store a record directly (no HTTP) and return it as the API would store it.

        Unlike the REST API this accepts ``sys_*`` fields (``sys_created_on``, ``sys_id``...) and any
        ``opened_at``, so tests can seed history.
        """
        with self._lock:
            return self._instance.full(table, self._instance.insert(table, fields, trusted=True))

    def update(self, table: str, sys_id: str, fields: dict[str, Any]) -> dict[str, str]:
        """Change a record as a person in the UI would: bumps ``sys_updated_on`` / ``sys_mod_count`` and
        runs the lifecycle rules (cascades). Pass ``sys_updated_by`` to act as another user.

        Raises ``KeyError`` for an unknown record.
        """
        with self._lock:
            record = self._instance.update(table, sys_id, fields, trusted=True)
            if record is None:
                raise KeyError(f"{table}/{sys_id}")
            return self._instance.full(table, record)

    def get(self, table: str, sys_id: str) -> dict[str, str] | None:
        """A copy of one record with every column (``""`` when unset), or ``None``."""
        with self._lock:
            record = self._instance.record(table, sys_id)
            return None if record is None else self._instance.full(table, record)

    def records(self, table: str) -> list[dict[str, str]]:
        """Copies of every record of ``table`` in insertion order."""
        with self._lock:
            return [self._instance.full(table, record) for record in self._instance.rows(table)]

    def delete(self, table: str, sys_id: str) -> bool:
        """Remove a record; ``False`` when there was none."""
        with self._lock:
            return self._instance.delete(table, sys_id)

    def journal(self, sys_id: str, element: str | None = None) -> list[dict[str, str]]:
        """The ``sys_journal_field`` rows of a record, oldest first, optionally of one element."""
        with self._lock:
            return [self._instance.full("sys_journal_field", row) for row in self._instance.rows("sys_journal_field")
                    if row.get("element_id") == sys_id and (element is None or row.get("element") == element)]

    # -- HTTP ------------------------------------------------------------------------------------

    def server(self, port: int = 0) -> SimServer:
        """A (not yet started) :class:`SimServer` on 127.0.0.1 serving :meth:`handle` behind basic or
        bearer auth. Use it as a context manager or call ``start()``."""
        server = SimServer(self._authenticated, port=port, seed=self.seed)
        self._servers.append(server)
        return server

    def _item_fault(self, request: SimRequest) -> tuple[FaultRule, SimServer] | None:
        """The fault for one item of a batch: the rules of the server(s) serving this simulator."""
        for server in self._servers:
            rule = server.fault_for(request, connection=False)
            if rule is not None:
                return rule, server
        return None

    def handle(self, request: SimRequest) -> SimResponse:
        """Answer one HTTP request (authentication is checked by :meth:`server`, not here)."""
        with self._lock:
            return self.router.dispatch(request, authenticate=False)

    def _authenticated(self, request: SimRequest) -> SimResponse:
        with self._lock:
            return self.router.dispatch(request)


def serve(port: int, user: str = "admin", password: str = "admin", people: Iterable[str] = (),
          groups: Iterable[str] = ()) -> None:
    """Run a simulator on 127.0.0.1:``port`` until Ctrl-C (``mim simulate servicenow``), with ``people`` (user
    names) and ``groups`` (group names) in its directory, such as those a process file names."""
    sim = ServiceNowSim(user=user, password=password)
    sim.add_people(people, groups)
    server = sim.server(port)
    server.start()
    print(f"ServiceNow simulator on {server.url} (user {user})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def _display_name(user_name: str) -> str:
    return " ".join(part.capitalize() for part in user_name.replace("_", ".").split(".") if part) or user_name
