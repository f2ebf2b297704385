"""The Jira adapter: Jira Cloud (REST v3) and Jira Data Center (REST v2) for Jira Service Management projects.

Transport and syntax only; which writes to make is decided by the engine. By concern:

* :mod:`.jql` and :mod:`.adf`: JQL values and times, Atlassian Document Format;
* :mod:`.client`: transport and auth, answers mapped through the retry table, the retry policy;
* :mod:`.search`: searches, every page (Cloud ``nextPageToken``, Data Center ``startAt``), loop-guarded;
* :mod:`.discovery`: the site's flavour, custom fields, link types and issue types;
* :mod:`.fields`: the ``_``-prefixed keys derived from an issue for the mapping, canonical states;
* :mod:`.cache`, :mod:`.read`: the issues read; the delta poll, marked major incidents, follow-ups;
* :mod:`.issues` and :mod:`.write`: REST verbs on issues, made safe to repeat, and the write verbs;
* :mod:`.doctor`: the read-only checks of ``mim doctor``;
* :mod:`.platform`: :class:`JiraPlatform`, the façade the sync cycle uses.
"""

from __future__ import annotations

from connector.platforms.jira.adf import adf_document, adf_plain_text
from connector.platforms.jira.jql import jql_epoch_ms, jql_string
from connector.platforms.jira.platform import JiraPlatform

__all__ = ["JiraPlatform", "jql_string", "jql_epoch_ms", "adf_document", "adf_plain_text"]
