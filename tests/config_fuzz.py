"""A seeded mutator of configuration files (rules, process, mappings, rule tests) and the harness that feeds
each mutant to the loaders and, when it loads, to the stages that use it.

Shared by the fuzz tests (``tests/test_config_fuzz.py``: a few hundred mutants in seconds) and the bench run
(``bench/bench_fuzz_config.py``: thousands, with timings and peak memory). The same seed gives the same files.

A mutant passes when the loader returns located errors (or none) and, when it has none, the rest of the
pipeline runs with it without an exception: the rules through the engine on a storm, the process file
through the planner across a major incident's whole life, the mapping over sample platform records.
Anything else raised is a finding.
"""

from __future__ import annotations

import random
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
SEEDS: dict[str, list[Path]] = {
    "rules": [ROOT / "rules" / "default.yaml", ROOT / "bench" / "rules-uci" / "uci.yaml"],
    "process": [ROOT / "rules" / "process.yaml"],
    "mapping": [ROOT / "mappings" / "servicenow.yaml", ROOT / "mappings" / "jira.yaml"],
    "tests": [ROOT / "rules" / "tests" / "default.yaml"],
}
KINDS = tuple(SEEDS)

# Values that broke (or could break) a stage after the loader: wrong types inside lists, unhashable values,
# numbers and durations out of range, YAML's implicit types (timestamps, sexagesimal, octal, booleans), tags,
# control characters.
INTERESTING = [
    "[x, [y]]", "{a: 1}", "[]", "{}", "null", "~", "''", '""', "-1", "0", "1", "5", "6", "1.5", "-0.0",
    "99999999999999999999", "1e999", ".inf", "-.inf", ".nan", "0x1F", "0o17", "1_000", "12:30:45", "25:61",
    "99:99", "24:00", "-1:00", "true", "no", "yes", "on", "2026-02-30", "2026-13-01", "2026-03-02T10:00:00Z",
    "9999-12-31T23:59:59", "0001-01-01", "99999999999999999999w", "3000000w", "1000000d", "0s", "-5m", "5",
    "15x", "1h30", "m", "999999999999999999999999999999999999999999s", "1.5.5m", "1e3m",
    "!!binary aGVsbG8=", "!!python/object:os.system x", "!!set {a, b}", "!!omap [{a: 1}]", "!custom x",
    "!!timestamp 2026-02-30", "!!int abc", "!!float x", "!!str 5", "&a x", "*undefined", "<<: {a: 1}",
    '"\\x07"', '"\\0"', "\x07", "\x1b[31m", "\ufeff", "\u2028", "x" * 300, "'(unclosed'", "'[a-'", "'(a+)+$'",
    "'{key'", "'{__class__}'", "'{key.upper}'", "'{0}'", "'{}'", "'%s'", "'{key!r}'", "'{key:>99999}'",
    "Europe/Nowhere", "../../etc/passwd", "XX", "DE", "ZZZ", "'UTC+1'", "'123'", "'12345'",
    "[1, 2, 3]", "[a, b, a]", "[service, service]", "[priority]", "[opened_at]", "{in: [1, [2]]}",
    "{less_than: 3}", "{lte: x}", "{matches: '('}", "{contains: 5}", "{exists: maybe}", "{eq: [1]}",
    "{in: 5}", "{not_in: {a: 1}}", "{eq: {a: [b]}}", "{gt: 2026-01-01}",
]

KEYS = ["less_than", "bogus", "id", "when", "surge", "window", "threshold", "group_by", "distinct", "declare",
        "mode", "parent", "set", "late_children", "join_by", "order", "enabled", "version", "rules", "team",
        "managers", "rota", "on_call", "business_hours", "time_zone", "days", "start", "end", "holidays",
        "country", "subdivision", "communications", "update_every", "stakeholders", "templates", "change",
        "review", "tasks", "due", "costs", "per_service", "fields", "values", "times", "formats", "zone",
        "write", "export", "platform", "url", "cases", "tickets", "expect", "now", "defaults", "in", "eq",
        "lte", "gte", "matches", "exists", "state", "priority", "service", "caller", "<<", "? [a]", "1", "null"]


def _alias_bomb(levels: int, fan: int) -> str:
    lines = ["version: 1", 'a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join(f'*a{i - 1}' for _ in range(fan))}]")
    lines.append(f"rules: *a{levels}")
    return "\n".join(lines) + "\n"


def _deep(depth: int, flow: bool) -> str:
    if flow:
        return "version: 1\nrules: " + "[" * depth + "]" * depth + "\n"
    out = ["version: 1", "rules:"]
    for i in range(depth):
        out.append("  " * (i + 1) + "- ")
        out[-1] += "x" if i == depth - 1 else ""
    return "\n".join(out) + "\n"


def _structural(rng: random.Random) -> str:
    """A hostile file built from scratch rather than mutated."""
    choice = rng.randrange(8)
    if choice == 0:
        return _alias_bomb(rng.randint(6, 12), rng.randint(5, 10))
    if choice == 1:
        return _deep(rng.choice([200, 1000, 5000, 50000]), flow=True)
    if choice == 2:
        return _deep(rng.choice([200, 1000, 3000]), flow=False)
    if choice == 3:
        return "version: 1\nrules: &r [*r]\n" if rng.random() < 0.5 else "a: &a {b: *a}\n"
    if choice == 4:
        return "version: 1\nrules:\n" + "".join(f"  - id: r{i}\n    when: {{priority: 1}}\n" for i in range(rng.choice([2000, 20000])))
    if choice == 5:
        return "version: 1\nrules: [" + ", ".join(["{id: x}"] * rng.choice([10, 1000])) + "]\n"
    if choice == 6:
        return "".join(chr(rng.randrange(0, 0x250)) for _ in range(rng.randint(1, 400)))
    return "--- \nversion: 1\n---\nversion: 2\n"


def _replace_scalar(line: str, rng: random.Random) -> str:
    """Replace the value after a ``key:`` (or a list item) with an interesting value."""
    spots = [i + 1 for i, ch in enumerate(line) if ch in ":-[,{" and i + 1 < len(line)]
    if not spots:
        return line + " " + rng.choice(INTERESTING)
    start = rng.choice(spots)
    end = start
    while end < len(line) and line[end] not in ",]}\n":
        end += 1
    return line[:start] + " " + rng.choice(INTERESTING) + line[end:]


def _rename_key(line: str, rng: random.Random) -> str:
    head, sep, tail = line.partition(":")
    if not sep:
        return line
    indent = head[: len(head) - len(head.lstrip(" -{"))]
    return indent + rng.choice(KEYS) + sep + tail


def mutate(text: str, rng: random.Random) -> str:
    """One to four random edits of ``text``: values, keys, lines, bytes."""
    lines = text.splitlines()
    # mostly one edit, so that many mutants still load and reach the stages after the loader
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        if not lines:
            lines = [""]
        op = rng.randrange(16)
        i = rng.randrange(len(lines))
        if op <= 7:
            lines[i] = _replace_scalar(lines[i], rng)
        elif op == 8:
            lines[i] = _rename_key(lines[i], rng)
        elif op == 9:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif op == 10:
            del lines[i]
        elif op == 11:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 12:
            lines[i] = " " * rng.randint(0, 6) + lines[i].lstrip()
        elif op == 13:
            pos = rng.randint(0, len(lines[i]))
            junk = rng.choice(["\x00", "\x07", "\x1f", "\x7f", "\t", "\r", "\ufffe", "\x85",
                               ":", "- ", "[", "]", "{", "}", "&a ", "*a", "!!", "? ", "|", ">", "#", "'", '"',
                               "%YAML 1.1", "<<: *a", "\\", "\u202e"])
            lines[i] = lines[i][:pos] + junk + lines[i][pos:]
        elif op == 14:
            cut = rng.randint(0, len(lines))
            lines = lines[:cut]
        else:
            lines.insert(i, rng.choice(KEYS) + ": " + rng.choice(INTERESTING))
    return "\n".join(lines) + ("\n" if rng.random() < 0.9 else "")


def generate(kind: str, rng: random.Random) -> str:
    """A mutant of one of ``kind``'s seed files (one in twenty is built from scratch)."""
    if rng.random() < 0.05:
        return _structural(rng)
    seed = rng.choice(SEEDS[kind]).read_text(encoding="utf-8")
    return mutate(seed, rng)


def corpus(count: int, seed: int) -> list[tuple[str, str]]:
    """``count`` mutants ``(kind, text)``, the kinds in turn, deterministic for ``seed``."""
    rng = random.Random(seed)
    return [(KINDS[i % len(KINDS)], generate(KINDS[i % len(KINDS)], rng)) for i in range(count)]


# -- the harness -----------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one mutant did: how many located errors, and the traceback of anything else raised."""

    kind: str
    errors: int
    seconds: float
    crash: str | None = None
    stage: str = "load"
    exception: str | None = None
    """The exception's type and the first line of its message (``TypeError: unhashable type: 'list'``)."""


START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)  # a Monday, business hours in Berlin


def _storm_tickets() -> list:
    from connector.core.ticket import Ticket

    tickets = []
    for i in range(8):
        tickets.append(Ticket(id=f"t{i}", key=f"INC{i:04d}", title="Checkout fails", service="web-shop",
                              ci="db-1", caller=f"caller{i}", priority=3 if i else 1, state="new",
                              opened_at=START + timedelta(minutes=i), updated_at=START + timedelta(minutes=i)))
    return tickets


def exercise_rules(path: Path) -> tuple[int, str]:
    """Load a rule file; when it loads, check it against both mappings and run it through the engine."""
    from connector.core.mapping import load_mapping
    from connector.detection.engine import decide
    from connector.detection.rules import check_rules_against_mapping, load_rules

    ruleset = load_rules([path])
    if ruleset.errors:
        return len(ruleset.errors), "load"
    for name in ("servicenow", "jira"):
        mapping, _ = load_mapping(ROOT / "mappings" / f"{name}.yaml")
        assert mapping is not None
        check_rules_against_mapping(ruleset, mapping)
    decide(_storm_tickets(), [], ruleset.rules, START + timedelta(minutes=20))
    return 0, "engine"


def exercise_process(path: Path) -> tuple[int, str]:
    """Load a process file; when it loads, run a major incident's whole life through the planner."""
    from connector.detection.engine import decide
    from connector.detection.registry import Registry
    from connector.detection.rules import load_rules
    from connector.process.context import ProcessContext
    from connector.process.planner import plan_process
    from connector.process.processfile import load_process

    process, errors = load_process(path)
    if process is None or errors:
        return max(len(errors), 1), "load"
    rules = load_rules([ROOT / "rules"]).rules
    tickets = {t.id: t for t in _storm_tickets()}
    now = START + timedelta(minutes=20)
    registry = Registry()
    decisions = decide(tickets.values(), [], rules, now)
    registry.register(decisions, now)
    declared = frozenset(d.mi_id for d in decisions.declarations)
    steps = [({}, 0), ({"stage": "resolution"}, 30), ({"state": "resolved"}, 60), ({"state": "closed"}, 180),
             ({}, 60 * 24 * 3), ({}, 60 * 24 * 40)]
    for change, minutes in steps:
        now += timedelta(minutes=minutes)
        for mi in list(registry.records):
            if mi in tickets and change:
                tickets[mi] = tickets[mi].model_copy(update={**change, "updated_at": now})
        registry.refresh(list(tickets.values()), rules)
        plan_process(ProcessContext(now, process, list(registry), dict(tickets), declared=declared))
        declared = frozenset()
    # out of hours too (a Sunday night in Berlin)
    plan_process(ProcessContext(datetime(2026, 3, 8, 2, 0, tzinfo=timezone.utc), process, list(registry), dict(tickets)))
    return 0, "planner"


SAMPLE_RECORDS = {
    "servicenow": [
        {"sys_id": "0" * 31 + "1", "number": "INC0010001", "short_description": "Mail down", "state": "1",
         "opened_at": "2026-03-02 09:00:00", "sys_updated_on": "2026-03-02 09:01:00", "priority": "3",
         "impact": "2", "urgency": "2", "business_service": {"value": "a" * 32, "link": "x"}, "caller_id": "u1"},
        {"sys_id": "12345", "number": "INC0010002", "state": "99", "opened_at": "yesterday", "priority": "x"},
        {"number": "INC0010003"},
    ],
    "jira": [
        {"id": "10001", "key": "ITSM-1", "fields": {"summary": "Mail down", "created": "2026-03-02T09:00:00.000+0000",
                                                    "updated": "2026-03-02T09:01:00.000+0000",
                                                    "priority": {"name": "High"}, "status": {"name": "Open", "statusCategory": {"key": "new"}},
                                                    "components": [{"name": "email"}], "reporter": {"accountId": "abc"}}},
        {"id": "x", "key": "ITSM-2", "fields": {"created": 5, "priority": "weird", "components": "email"}},
        {"fields": None},
    ],
}


def exercise_mapping(path: Path) -> tuple[int, str]:
    """Load a mapping; when it loads, read sample records of its platform through it (a malformed record is
    a :class:`MappingError`, which the cycle reports and skips) and map values back."""
    from connector.core.mapping import MappingError, load_mapping

    mapping, errors = load_mapping(path)
    if mapping is None or errors:
        return max(len(errors), 1), "load"
    mapping.platform_fields()
    for record in SAMPLE_RECORDS[mapping.platform]:
        for export in (False, True):
            try:
                mapping.to_ticket(record, base_url="https://example.invalid", export=export)
            except MappingError:
                pass
    for name in ("state", "priority", "major", "stage"):
        mapping.to_platform(name, "resolved" if name == "state" else 1)
    return 0, "mapping"


def exercise_tests(path: Path) -> tuple[int, str]:
    """Load a rule-test file; when it loads, run its cases against the shipped rules."""
    from connector.detection.rules import load_rules
    from connector.tools.ruletest import load_cases, run_tests

    cases, errors = load_cases(path)
    if errors:
        return len(errors), "load"
    run_tests([path], load_rules([ROOT / "rules"]).rules)
    return 0, "ruletest"


EXERCISES: dict[str, Callable[[Path], tuple[int, str]]] = {
    "rules": exercise_rules, "process": exercise_process, "mapping": exercise_mapping, "tests": exercise_tests,
}


def run_one(kind: str, path: Path) -> Outcome:
    """Feed the file at ``path`` to its loader and the stages after it; never raises."""
    started = time.perf_counter()
    try:
        errors, stage = EXERCISES[kind](path)
    except Exception as exc:  # noqa: BLE001 - anything raised is the finding this harness looks for
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        return Outcome(kind, 0, time.perf_counter() - started, traceback.format_exc(), "crash",
                       f"{type(exc).__name__}: {first}")
    return Outcome(kind, errors, time.perf_counter() - started, None, stage)


def write_mutant(folder: Path, index: int, kind: str, text: str) -> Path:
    """Write one mutant where its loader expects it (a process file is named ``process*.yaml``)."""
    name = {"rules": f"rules-{index}.yaml", "process": f"process-{index}.yaml", "mapping": f"mapping-{index}.yaml",
            "tests": f"tests-{index}.yaml"}[kind]
    path = folder / name
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    return path
