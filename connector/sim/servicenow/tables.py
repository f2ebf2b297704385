"""The Table API (``/api/now[/v1|/v2]/table/<table>[/<sys_id>]``) and the Aggregate API
(``/api/now/stats/<table>``)."""

from __future__ import annotations

import re
from typing import Any

from connector.sim.base import SimRequest, SimResponse
from connector.sim.servicenow.errors import NO_RECORD_ID, NO_RECORD_LIST, error
from connector.sim.servicenow.instance import Instance, Record
from connector.sim.servicenow.params import accepts_json, flag, int_arg, json_object, query_of
from connector.sim.servicenow.policies import DataPolicyError
from connector.sim.servicenow.query import sort_key
from connector.sim.servicenow.render import Renderer
from connector.sim.servicenow.schema import TABLE_NAME

DEFAULT_LIMIT = 10000


class TableApi:
    """Reads and writes records of ``instance``; the route table runs :meth:`check` before the method."""

    def __init__(self, instance: Instance, render: Renderer) -> None:
        self.instance = instance
        self.render = render

    @staticmethod
    def checked(request: SimRequest, table: str) -> SimResponse | None:
        """The error for a bad table name or an unacceptable ``Accept`` header, if any."""
        if not TABLE_NAME.fullmatch(table):
            return error(400, f"Invalid table {table}", None)
        if not accepts_json(request):
            return error(406, "Not Acceptable", "The Accept header must allow application/json")
        return None

    @classmethod
    def check(cls, request: SimRequest, table: str, **_: str | None) -> SimResponse | None:
        """What the Table API rejects before it looks at the method: the table name, ``Accept``, and a
        write's ``Content-Type``."""
        checked = cls.checked(request, table)
        if checked is not None:
            return checked
        if request.method in ("POST", "PUT", "PATCH"):
            content_type = (request.header("Content-Type") or "").lower()
            if content_type and "json" not in content_type:
                return error(415, "Unsupported Media Type", "Content-Type must be application/json")
        return None

    def delete_record(self, request: SimRequest, table: str, sys_id: str, version: str | None) -> SimResponse:
        """``DELETE .../table/<table>/<sys_id>``: 204, or 404 when there is no such record."""
        return SimResponse(204) if self.instance.delete(table, sys_id) else error(404, *NO_RECORD_ID)

    def list_records(self, request: SimRequest, table: str, version: str | None) -> SimResponse:
        """``GET .../table/<table>``: a page of the matching rows, ``X-Total-Count`` and ``Link``; v1 answers an
        empty page with 404."""
        options = self.render.read_options(request, table)
        rows = self.instance.select(table, *query_of(request))
        total = len(rows)
        limit = int_arg(request, "sysparm_limit", DEFAULT_LIMIT)
        limit = limit if limit > 0 else DEFAULT_LIMIT
        offset = max(int_arg(request, "sysparm_offset", 0), 0)
        page = [row for row in rows[offset:offset + limit] if self.instance.visible(table, row)]
        if not page and version == "v1":
            return error(404, *NO_RECORD_LIST)
        headers: dict[str, str] = {}
        if not flag(request, "sysparm_no_count"):
            headers["X-Total-Count"] = str(total)
        if not flag(request, "sysparm_suppress_pagination_header") and (offset > 0 or total > limit):
            headers["Link"] = self.render.link_header(request, options.base, offset, limit, total)
        return SimResponse(200, {"result": [self.render.record(table, row, options) for row in page]}, headers)

    def read_record(self, request: SimRequest, table: str, sys_id: str, version: str | None) -> SimResponse:
        """``GET .../table/<table>/<sys_id>``."""
        record = self.instance.record(table, sys_id)
        if record is None or not self.instance.visible(table, record):
            return error(404, *NO_RECORD_ID)
        return SimResponse(200, {"result": self.render.record(table, record, self.render.read_options(request, table))})

    def create_record(self, request: SimRequest, table: str, version: str | None) -> SimResponse:
        """``POST .../table/<table>``: 201 with ``Location``."""
        body = json_object(request)
        if isinstance(body, SimResponse):
            return body
        try:
            record = self.instance.insert(table, body, trusted=False)
        except DataPolicyError as refused:
            return error(403, refused.message, refused.detail)
        base = self.render.base_url(request)
        headers = {"Location": f"{base}/api/now/table/{table}/{record['sys_id']}"}
        return self._write_response(request, table, record, 201, headers)

    def write_record(self, request: SimRequest, table: str, sys_id: str, version: str | None) -> SimResponse:
        """``PUT|PATCH .../table/<table>/<sys_id>``."""
        body = json_object(request)
        if isinstance(body, SimResponse):
            return body
        try:
            record = self.instance.update(table, sys_id, body, trusted=False)
        except DataPolicyError as refused:
            return error(403, refused.message, refused.detail)
        if record is None:
            return error(404, *NO_RECORD_ID)
        return self._write_response(request, table, record, 200, {})

    def _write_response(self, request: SimRequest, table: str, record: Record, status: int,
                        headers: dict[str, str]) -> SimResponse:
        if (request.header("X-no-response-body") or "").strip().lower() == "true":
            return SimResponse(status, None, headers)
        return SimResponse(status, {"result": self.render.record(table, record, self.render.read_options(request, table))},
                           headers)


class AggregateApi:
    """Statistics over the records of ``instance``."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance

    def stats(self, request: SimRequest, table: str) -> SimResponse:
        """``GET /api/now/stats/<table>``: count, min, max, sum and avg, optionally grouped."""
        checked = TableApi.checked(request, table)
        if checked is not None:
            return checked
        rows = self.instance.select(table, *query_of(request))
        group_by = [name.strip() for name in (request.arg("sysparm_group_by") or "").split(",") if name.strip()]
        if not group_by:
            return SimResponse(200, {"result": {"stats": self._aggregate(request, table, rows)}})
        groups: dict[tuple[str, ...], list[Record]] = {}
        for row in rows:
            groups.setdefault(tuple(self.instance.value(table, row, name) for name in group_by), []).append(row)
        result = [{"stats": self._aggregate(request, table, members),
                   "groupby_fields": [{"field": name, "value": value} for name, value in zip(group_by, key)]}
                  for key, members in groups.items()]
        return SimResponse(200, {"result": result})

    def _aggregate(self, request: SimRequest, table: str, rows: list[Record]) -> dict[str, Any]:
        stats: dict[str, Any] = {}
        if flag(request, "sysparm_count"):
            stats["count"] = str(len(rows))
        for kind in ("min", "max", "sum", "avg"):
            names = [n.strip() for n in (request.arg(f"sysparm_{kind}_fields") or "").split(",") if n.strip()]
            for name in names:
                values = [v for v in (self.instance.value(table, row, name) for row in rows) if v != ""]
                stats.setdefault(kind, {})[name] = self._aggregate_value(kind, values)
        return stats

    @staticmethod
    def _aggregate_value(kind: str, values: list[str]) -> str:
        if not values:
            return ""
        numbers = [float(v) for v in values if re.fullmatch(r"-?\d+(\.\d+)?", v)]
        if kind in ("sum", "avg"):
            total = sum(numbers)
            result = total if kind == "sum" else total / len(numbers) if numbers else 0.0
            return str(int(result)) if float(result).is_integer() else f"{result:.4f}"
        key = sort_key(values)
        return min(values, key=key) if kind == "min" else max(values, key=key)
