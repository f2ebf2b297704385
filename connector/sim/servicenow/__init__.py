"""A ServiceNow Table API simulator for tests, ``mim demo`` and ``mim simulate servicenow``.

It follows the platform facts in ``shared/reference/servicenow.md``:

* Table API on any table: ``/api/now[/v1|/v2]/table/<table>[/<sys_id>]`` with GET, POST, PUT, PATCH and
  DELETE; ``{"result": ...}`` bodies whose values are all strings; 32-hex ``sys_id``; UTC
  ``YYYY-MM-DD HH:MM:SS`` timestamps from an injectable clock; ``sys_mod_count``; per-table numbers
  (``INC0010001``); reference fields as ``{"link", "value"}`` unless excluded; ``sysparm_display_value``;
  journal fields (``work_notes``, ``comments``) that read back empty and land in ``sys_journal_field``.
* An encoded-query subset (see :func:`parse_encoded_query`), ``sysparm_fields``, ``sysparm_limit`` /
  ``sysparm_offset``, ``X-Total-Count`` and ``Link`` paging headers, v1's 404 on an empty list.
* The Batch API (``/api/now/v1/batch``), the Aggregate API (``/api/now/stats/<table>``: count, group by,
  min/max/sum/avg), OAuth password and refresh-token grants (``/oauth_token.do``) and basic auth.
* Incident lifecycle: priority from impact x urgency, ``resolved_at`` / ``closed_at``, ``active``, and a
  parent's resolution cascading to its open child incidents (Major Incident Management).
* What a real instance refuses (``policies``): field ACLs (hidden fields, ``major_incident_manager`` for
  accepting a major incident: 200 and the old value kept), choice lists in ``sys_choice`` (a value that
  is not an active choice is stored empty), references to records that do not exist (stored empty) and
  the resolution data policy (403). The API user is a
  ``sys_user`` with roles.

Faults and the request log come from :class:`connector.sim.base.SimServer`.

Modules by concern: ``schema`` (what a default instance knows about its tables), ``query`` (encoded
queries), ``instance`` (the records and business rules), ``render`` (how the Table API shows records),
``policies`` (what a REST write may not do), ``tables`` (Table and Aggregate APIs), ``batch``, ``oauth``
(credentials), and ``server`` (the route table and :class:`ServiceNowSim`).
"""

from connector.sim.servicenow.query import Condition, EncodedQuery, parse_encoded_query
from connector.sim.servicenow.schema import INCIDENT_FIELDS
from connector.sim.servicenow.server import ServiceNowSim, serve

__all__ = ["ServiceNowSim", "INCIDENT_FIELDS", "serve", "Condition", "EncodedQuery", "parse_encoded_query"]
