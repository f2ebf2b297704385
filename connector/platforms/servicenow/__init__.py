"""The ServiceNow adapter: the Table API (through pysnow 0.7.17), the Batch API and the write verbs.

* :mod:`.query`: encoded-query syntax (values refused rather than escaped, column names, times);
* :mod:`.client`: transport and auth (the only module that imports pysnow), answers mapped through
  ServiceNow's rows of the retry table, keyset paging;
* :mod:`.records`: the incident table's columns and the records read;
* :mod:`.read`: the delta poll, the marked major incidents and the follow-ups;
* :mod:`.discovery`: what the instance has (the stage column, group and user ids) and ``mim doctor``;
* :mod:`.fields`: canonical fields and values as columns and stored values, and back;
* :mod:`.write` and :mod:`.patches`: the write verbs, one PATCH per record, the Batch API;
* :mod:`.platform`: :class:`ServiceNowPlatform`, the façade the sync cycle uses.
"""

from __future__ import annotations

from connector.platforms.paging import PagingStalled
from connector.platforms.servicenow.client import MaybeApplied, error_for
from connector.platforms.servicenow.platform import ServiceNowPlatform
from connector.platforms.servicenow.query import QueryValueError, query_time, query_value

__all__ = ["ServiceNowPlatform", "QueryValueError", "PagingStalled", "MaybeApplied", "query_value", "query_time",
           "error_for"]
