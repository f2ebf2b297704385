"""How the Table API shows records: the fields asked for, reference fields as ``{"link", "value"}``,
``sysparm_display_value`` (choice labels, referenced numbers and names), and the ``Link`` paging header."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from connector.sim.base import SimRequest
from connector.sim.servicenow.instance import Instance, Record
from connector.sim.servicenow.params import display_mode, flag
from connector.sim.servicenow.schema import CHOICE_LABELS, JOURNAL_FIELDS, reference_target


@dataclass
class ReadOptions:
    """How to show records: the fields, ``display`` (``true``, ``false`` or ``all``), whether reference links
    are left out, and the instance URL for links."""

    fields: list[str]
    display: str
    exclude_links: bool
    base: str


class Renderer:
    """Shows the records of ``instance`` as the Table API does."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance

    def read_options(self, request: SimRequest, table: str) -> ReadOptions:
        """What a read asks for: ``sysparm_fields`` (known ones; default every column), display values, links."""
        requested = [name.strip() for name in (request.arg("sysparm_fields") or "").split(",") if name.strip()]
        fields = [name for name in requested if self.instance.field_known(table, name)] if requested \
            else self.instance.visible_columns(table)
        return ReadOptions(fields, display_mode(request), flag(request, "sysparm_exclude_reference_link"),
                           self.base_url(request))

    @staticmethod
    def base_url(request: SimRequest) -> str:
        """The instance URL the client used (its ``Host``)."""
        return f"http://{request.header('Host') or '127.0.0.1'}"

    def record(self, table: str, row: Record, options: ReadOptions) -> dict[str, Any]:
        """A row as the Table API answers it: the asked fields, references as links, display values if asked."""
        return {name: self._cell(table, row, name, options) for name in options.fields}

    def _cell(self, table: str, row: Record, name: str, options: ReadOptions) -> Any:
        value = "" if name in JOURNAL_FIELDS else self.instance.value(table, row, name)
        target = None if "." in name else reference_target(table, name)
        display = self._display(table, name, value, target)
        if target is None or value == "":
            if options.display == "all":
                return {"display_value": display, "value": value}
            return display if options.display == "true" else value
        link = {} if options.exclude_links else {"link": f"{options.base}/api/now/table/{target}/{value}"}
        if options.display == "all":
            return {"display_value": display, **link, "value": value}
        if options.display == "true":
            return {"display_value": display, **link} if link else display
        return {**link, "value": value} if link else value

    def _display(self, table: str, name: str, value: str, target: str | None) -> str:
        if target is not None:
            found = self.instance.lookup(target, value)
            if found is None:
                return value
            referenced = found[1]
            return referenced.get("number") or referenced.get("name") or referenced.get("user_name") or value
        return CHOICE_LABELS.get(table, {}).get(name, {}).get(value, value)

    @staticmethod
    def link_header(request: SimRequest, base: str, offset: int, limit: int, total: int) -> str:
        """The ``Link`` header of a page: first, prev, next and last, with the request's other parameters."""
        def url(page_offset: int) -> str:
            params = [(k, v) for k, values in request.query.items() if k not in ("sysparm_offset", "sysparm_limit")
                      for v in values]
            params += [("sysparm_offset", str(page_offset)), ("sysparm_limit", str(limit))]
            return f"<{base}{request.path}?{urlencode(params)}>"

        links = [f'{url(0)};rel="first"']
        if offset > 0:
            links.append(f'{url(max(offset - limit, 0))};rel="prev"')
        if offset + limit < total:
            links.append(f'{url(offset + limit)};rel="next"')
        links.append(f'{url(max((total - 1) // limit * limit, 0))};rel="last"')
        return ",".join(links)
