"""A ServiceNow simulator that knows the people and groups of the shipped process file, as an instance whose
directory is synchronised would: the connector resolves team, manager and on-call names to sys_ids, and the
simulator refuses (stores empty) a reference to a record it does not have."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connector.process.processfile import load_process
from connector.sim.servicenow import ServiceNowSim

SHIPPED_PROCESS = Path(__file__).resolve().parent.parent / "rules" / "process.yaml"


def servicenow_sim(**options: Any) -> ServiceNowSim:
    """``ServiceNowSim(**options)`` with the shipped process file's people and groups added."""
    sim = ServiceNowSim(**options)
    process, errors = load_process(SHIPPED_PROCESS)
    if process is None or errors:
        raise RuntimeError(f"the shipped process file does not load: {errors}")
    sim.add_people(process.people(), process.groups())
    return sim
