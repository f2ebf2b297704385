"""Printing and recording the request-count benchmarks (shared by the ServiceNow and Jira scripts)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def methods(counts: Counter[str]) -> str:
    """``3 GET, 4 POST``"""
    return ", ".join(f"{count} {method}" for method, count in sorted(counts.items()))


def report(rows: list[tuple[str, str]], title: str, description: str, append: bool) -> None:
    """Print the figures as a table; with ``append`` also add them as a section of bench/RESULTS.md."""
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    if not append:
        return
    section = ["", f"## {title}", "", description, "", "| cycle | requests |", "|---|---|"]
    section += [f"| {name} | {value} |" for name, value in rows]
    prefix = "" if RESULTS.exists() else "# Benchmark results\n"
    with RESULTS.open("a", encoding="utf-8") as out:
        out.write(prefix + "\n".join(section) + "\n")
