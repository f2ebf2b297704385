"""A Jira Cloud / Data Center (plus JSM major-incident bits) simulator for tests and the demo.

The simulator keeps one project (``ITSM``) in memory and answers the REST calls a major-incident
connector makes, with the shapes, status codes and traps of the real products:

* Cloud: ``/rest/api/3`` (and ``/rest/api/2``), ``GET|POST /search/jql`` with opaque ``nextPageToken``
  paging, no ``total``, ``id``-only default fields and ``reconcileIssues``; the removed
  ``/rest/api/{2,3}/search`` answers **410**; ADF bodies on v3; users by ``accountId``.
* Data Center: ``/rest/api/2`` only, ``/search`` with ``startAt``/``maxResults``/``total``; plain-text
  bodies; users by ``name``; ``Authorization: Bearer <PAT>``.
* JQL subset with Jira's time-zone trap: quoted date literals are read in the *user's* time zone at
  minute precision; unquoted numbers are epoch milliseconds.
* Optional search lag (eventual consistency), per-issue write limits (413), link-direction semantics,
  entity properties, JSM internal comments (``sd.public.comment``), the major-incident custom field and
  the JSM Incidents API ``.../incident/{issueId}/major``.

Use :class:`JiraSim` from Python (seed issues, inspect state) and :meth:`JiraSim.server` to serve it over
HTTP via :class:`connector.sim.base.SimServer`; :func:`serve` runs it in the foreground.

Modules by concern: ``catalogue`` (the site's fixed configuration), ``site`` (its data), ``jql`` and
``jql_eval`` (JQL), ``adf`` and ``times`` (formats), ``render`` (how the API shows data), ``fields`` (how
request bodies change issues), ``human`` (the Python API's edits), the endpoints in ``meta``, ``search``,
``issues``, ``comments``, ``links`` and ``jsm``, and ``server`` (the route table and :class:`JiraSim`).
"""

from connector.sim.jira.adf import adf_from_text, adf_to_text
from connector.sim.jira.errors import SEARCH_REMOVED
from connector.sim.jira.jql import JqlError
from connector.sim.jira.server import JiraSim, LostAnswer, seeded, serve
from connector.sim.jira.times import jira_time

__all__ = ["JiraSim", "LostAnswer", "seeded", "JqlError", "SEARCH_REMOVED", "serve", "jira_time", "adf_from_text", "adf_to_text"]
