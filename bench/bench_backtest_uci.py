"""Benchmark: the whole ``mim backtest`` of the UCI ServiceNow event log against a bare ``csv.reader`` pass.

    python bench/bench_backtest_uci.py [--runs 5] [--zip PATH]

Both are timed as whole processes, as a user waits for them: the floor is ``python -c`` with a bare
``csv.reader`` pass over the zip member (open the archive, decompress, decode, split every row, nothing
else); the backtest is ``mim backtest --tickets incident_event_log.zip --json`` (141,712 rows -> 24,918
tickets through mappings/servicenow.yaml), with the shipped rules and with bench/rules-uci, output to
/dev/null. The commands run alternately, ``--runs`` rounds, and each figure is the median wall time of its
runs (CPU time of the child and its peak RSS beside it); the ratio is median over median. ``mim --help``
alone is timed the same way (the import cost every command pays).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ZIP = ROOT.parent / "shared" / "data" / "uci-incident-event-log" / "incident_event_log.zip"

FLOOR = """
import csv, io, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as archive:
    name = next(n for n in archive.namelist() if n.endswith(".csv"))
    with archive.open(name) as raw:
        rows = sum(1 for _ in csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")))
"""


def _mim() -> list[str]:
    found = shutil.which("mim", path=str(Path(sys.executable).parent)) or shutil.which("mim")
    return [found] if found else [sys.executable, str(ROOT / "cli.py")]


def _run(command: list[str]) -> dict[str, float]:
    """One whole process: wall time, its CPU time and its own peak RSS (MiB, from ``wait4``)."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                             env={**os.environ, "MIM_RULES": str(ROOT / "rules"), "MIM_MAPPINGS": str(ROOT / "mappings")})
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])}... exited with {child.returncode}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak_mib": usage.ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--zip", type=Path, default=DEFAULT_ZIP)
    parser.add_argument("--cli", type=Path, default=None,
                        help="time `python CLI` instead of the installed mim (another version's cli.py, for a before)")
    args = parser.parse_args()
    if not args.zip.is_file():
        raise SystemExit(f"{args.zip}: not found (see ../shared/data/README.md)")
    mim = [sys.executable, str(args.cli)] if args.cli else _mim()
    commands: dict[str, list[str]] = {
        "bare csv.reader pass": [sys.executable, "-c", FLOOR, str(args.zip)],
        "mim backtest (shipped rules)": [*mim, "backtest", "--tickets", str(args.zip), "--no-progress", "--json"],
        "mim backtest (bench/rules-uci)": [*mim, "backtest", "--tickets", str(args.zip), "--rules",
                                          str(ROOT / "bench" / "rules-uci"), "--no-progress", "--json"],
        "mim --help": [*mim, "--help"],
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in commands}
    for name, command in commands.items():  # one warm-up run each: the page cache, not the code, is warmed
        _run(command)
    for _ in range(args.runs):
        for name, command in commands.items():
            results[name].append(_run(command))
    floor = statistics.median(r["wall"] for r in results["bare csv.reader pass"])
    load = os.getloadavg()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}; {args.zip.name}; alternating, median of {args.runs} whole-process runs")
    print(f"{'command':<32} {'median s':>8} {'runs (wall s)':>34} {'x csv':>6} {'CPU s':>6} {'peak MiB':>9}")
    for name, runs in results.items():
        walls = [r["wall"] for r in runs]
        median: Any = statistics.median(walls)
        print(f"{name:<32} {median:>8.2f} {' '.join(f'{w:.2f}' for w in walls):>34} {median / floor:>6.2f} "
              f"{statistics.median(r['cpu'] for r in runs):>6.2f} {max(r['peak_mib'] for r in runs):>9.0f}")
    ratio = statistics.median(r["wall"] for r in results["mim backtest (shipped rules)"]) / floor
    print(f"target: mim backtest <= 2.0 x the bare csv pass: {ratio:.2f}x -> {'met' if ratio <= 2.0 else 'NOT met'}")


if __name__ == "__main__":
    main()
