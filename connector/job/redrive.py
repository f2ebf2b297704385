"""Re-driving the ledger: actions planned in an earlier cycle that never completed (the process died, the
platform failed) are sent again, so that the platform ends as the uninterrupted cycle would have left it.

Stage writes need care. A re-driven action is *uncertain*: the adapter reads the record first and skips what
is already true. A major incident declared and contained in a cycle killed after its writes has two stage
writes pending, identification and containment, and the platform already shows containment; re-sent, the
containment write is skipped as already true and the identification write goes through, leaving the incident
in the earlier stage. So of an incident's pending stage writes only the latest is re-sent: the highest stage
among them, or none when this cycle planned a stage write of its own. The others are superseded: recorded as
skipped, never sent again.
"""

from __future__ import annotations

from typing import Any, Sequence

from connector.core.actions import Action, SetStage
from connector.core.ticket import Stage

STAGE_RANK = {stage.value: rank for rank, stage in enumerate(Stage)}
"""identification < containment < resolution < maintenance < closed."""


def superseded_stages(planned: Sequence[Action], rows: list[dict[str, Any]]) -> set[str]:
    """Keys of the pending stage writes in ``rows`` (``StateStore.pending_rows``) that a later stage write of the
    same incident supersedes: one planned this cycle (``planned``), or a pending one of a higher stage."""
    fresh = {a.target for a in planned if isinstance(a, SetStage)}
    best: dict[str, dict[str, Any]] = {}
    stages = [row for row in rows if row["kind"] == "set_stage"]
    for row in stages:
        current = best.get(row["target"])
        if current is None or _rank(row) > _rank(current):
            best[row["target"]] = row
    return {row["key"] for row in stages if row["target"] in fresh or best[row["target"]] is not row}


def _rank(row: dict[str, Any]) -> int:
    return STAGE_RANK.get(str(row["action"].get("stage")), -1)


__all__ = ["STAGE_RANK", "superseded_stages"]
