"""The ServiceNow simulator as one object: :class:`ServiceNowSim` builds the instance and its APIs, declares the
route table, answers requests and serves them over HTTP; :func:`serve` runs one for ``mim simulate
servicenow``."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from connector.sim.base import Route, Router, SimRequest, SimResponse, SimServer
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
    ) -> None:
        self.seed = seed
        self._lock = threading.RLock()
        self._instance = Instance(user, clock or (lambda: datetime.now(timezone.utc)), cascade_resolve,
                                  INCIDENT_FIELDS if incident_fields is None else tuple(incident_fields), seed,
                                  strict_query, readable)
        self._credentials = Credentials(self._instance, password)
        self._tables = TableApi(self._instance, Renderer(self._instance))
        self._stats = AggregateApi(self._instance)
        self._batch = BatchApi(lambda request: self.router.dispatch(request, authenticate=False), batch_enabled,
                               batch_max_items)
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
        return SimServer(self._authenticated, port=port, seed=self.seed)

    def handle(self, request: SimRequest) -> SimResponse:
        """Answer one HTTP request (authentication is checked by :meth:`server`, not here)."""
        with self._lock:
            return self.router.dispatch(request, authenticate=False)

    def _authenticated(self, request: SimRequest) -> SimResponse:
        with self._lock:
            return self.router.dispatch(request)


def serve(port: int, user: str = "admin", password: str = "admin") -> None:
    """Run a simulator on 127.0.0.1:``port`` until Ctrl-C (``mim simulate servicenow``)."""
    sim = ServiceNowSim(user=user, password=password)
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
