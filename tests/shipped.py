"""Simulators that know the people and groups of the shipped process file, as a site whose directory is
synchronised would: the connector resolves team, manager and on-call names to the platform's ids, and the
simulator refuses (ServiceNow: stores empty) a reference to a record it does not have."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connector.process.processfile import ProcessFile, load_process
from connector.sim.jira import JiraSim
from connector.sim.servicenow import ServiceNowSim

SHIPPED_PROCESS = Path(__file__).resolve().parent.parent / "rules" / "process.yaml"


def _shipped_process() -> ProcessFile:
    process, errors = load_process(SHIPPED_PROCESS)
    if process is None or errors:
        raise RuntimeError(f"the shipped process file does not load: {errors}")
    return process


def servicenow_sim(**options: Any) -> ServiceNowSim:
    """``ServiceNowSim(**options)`` with the shipped process file's people and groups added."""
    sim = ServiceNowSim(**options)
    process = _shipped_process()
    sim.add_people(process.people(), process.groups())
    return sim


def jira_sim(**options: Any) -> JiraSim:
    """``JiraSim(**options)`` with the shipped process file's people as users and its groups as groups, and on
    Cloud also as Atlassian teams (what JSM responders name)."""
    sim = JiraSim(**options)
    process = _shipped_process()
    for person in process.people():
        sim.add_user(person)
    for group in process.groups():
        sim.add_group(group)
        if sim.flavour == "cloud":
            sim.add_team(group)
    return sim
