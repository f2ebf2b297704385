"""The people and groups a process file names: what must exist on the platform before the connector can
assign a team, a manager or a review task to them (``mim doctor`` checks it; the simulators can be seeded
with it)."""

from __future__ import annotations

from pathlib import Path

from connector.process.processfile import ProcessFile, load_process


def named_people(process: ProcessFile) -> list[str]:
    """Every person the process file names, in file order, once: the rota, the on-call people and the owners
    of the review tasks."""
    people = [person.id for person in process.managers.rota]
    people += [entry.person for entry in process.managers.on_call]
    people += [task.owner for task in process.review.tasks if task.owner]
    return list(dict.fromkeys(people))


def named_groups(process: ProcessFile) -> list[str]:
    """Every group the process file names, in file order, once: the team, the on-call groups and the
    out-of-hours group."""
    groups = [process.team.group] if process.team else []
    groups += [entry.group for entry in process.managers.on_call if entry.group]
    if process.out_of_hours is not None:
        groups.append(process.out_of_hours.group)
    return list(dict.fromkeys(groups))


def directory_of(path: Path) -> tuple[list[str], list[str]]:
    """The people and groups the process file at ``path`` names (none when it is missing or has errors: a
    simulator then starts with an empty directory)."""
    process, errors = load_process(path)
    if process is None or errors:
        return [], []
    return named_people(process), named_groups(process)


__all__ = ["directory_of", "named_groups", "named_people"]
