"""``mim rules check``: validate rule, process, mapping and rule-test files, all errors at once."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from connector.core.mapping import Mapping, load_mapping
from connector.core.yamlfile import Diagnostic, load_yaml
from connector.detection.rules import RuleSet, check_rules_against_mapping, load_rules
from connector.process.processfile import load_process
from connector.tools.ruletest import load_cases


def classify(path: Path) -> str:
    """``rules``, ``process``, ``mapping``, ``tests`` or ``unknown`` from a file's place and top-level keys."""
    if path.parent.name == "tests":
        return "tests"
    if path.name.startswith("process"):
        return "process"
    located, _ = load_yaml(path)
    data = located.data if located is not None else None
    if isinstance(data, dict):
        if "platform" in data and "fields" in data:
            return "mapping"
        if "cases" in data:
            return "tests"
        if "rules" in data:
            return "rules"
        if {"team", "business_hours", "communications", "review", "costs", "managers"} & set(data):
            return "process"
    return "rules"


def _yaml_files(path: Path) -> list[Path]:
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK):
            # rglob would skip the folder without a word, and "ok" would be a lie
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        found = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
        return found
    return [path]


def check_paths(paths: list[Path], platform: str | None,
                default_mappings: Path | None) -> tuple[list[Diagnostic], dict[str, int], list[Path]]:
    """Check every file under ``paths``. Rules are also checked against the mapping of ``platform`` (or
    every mapping found when no platform is configured). Returns errors, counts per kind and every file read."""
    errors: list[Diagnostic] = []
    counts = {"rules": 0, "process": 0, "mapping": 0, "tests": 0}
    read: list[Path] = []
    rule_paths: list[Path] = []
    mappings: dict[str, Mapping] = {}
    for root in paths:
        if not root.exists():
            errors.append(Diagnostic(str(root), 1, 1, "no such file or directory"))
            continue
        for path in _yaml_files(root):
            read.append(path)
            kind = classify(path)
            counts[kind] = counts.get(kind, 0) + 1
            if kind == "rules":
                rule_paths.append(path)
            elif kind == "process":
                errors += load_process(path)[1]
            elif kind == "mapping":
                mapping, merrs = load_mapping(path)
                errors += merrs
                if mapping is not None:
                    mappings[mapping.platform] = mapping
            elif kind == "tests":
                errors += load_cases(path)[1]
    ruleset = load_rules(rule_paths) if rule_paths else RuleSet()
    errors += ruleset.errors
    if default_mappings is not None and default_mappings.is_dir():
        seen = {p.resolve() for p in read}
        for path in sorted(default_mappings.glob("*.yaml")):
            if path.resolve() in seen:
                continue  # checked above, under the name it was given
            mapping, merrs = load_mapping(path)
            if mapping is not None and mapping.platform not in mappings:
                mappings[mapping.platform] = mapping
                read.append(path)
            elif mapping is None:
                read.append(path)
                errors += merrs
    if platform is not None:
        if platform in mappings:
            errors += check_rules_against_mapping(ruleset, mappings[platform])
    else:
        errors += _unmapped_everywhere(ruleset, list(mappings.values()))
    return sorted(set(errors)), counts, read


def _unmapped_everywhere(ruleset: RuleSet, mappings: list[Mapping]) -> list[Diagnostic]:
    """Without a configured platform a rule may target either one: it is an error only when no mapping
    provides a field it uses (set MIM_PLATFORM to check against one platform)."""
    if not mappings:
        return []
    per_mapping = [set(check_rules_against_mapping(ruleset, m)) for m in mappings]
    keyed = [{(e.path, e.line, e.col, _field_of(e.message)): e for e in errs} for errs in per_mapping]
    common = set.intersection(*(set(k) for k in keyed))
    return [keyed[0][k] for k in sorted(common)]


def _field_of(message: str) -> str:
    return message.split(" uses field ", 1)[-1].split(",", 1)[0]


def describe_files(paths: list[Path]) -> str:
    """``read N files: a, b, ...`` with paths relative to the current directory where they are under it."""
    cwd = Path.cwd()
    shown = []
    for path in paths:
        try:
            shown.append(str(path.resolve().relative_to(cwd)))
        except ValueError:
            shown.append(str(path))
    return f"read {len(paths)} file{'s' if len(paths) != 1 else ''}: {', '.join(shown) or 'none'}"
