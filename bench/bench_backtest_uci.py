"""Benchmark: ``connector.backtest.run_backtest`` on the UCI ServiceNow event log against a bare CSV pass.

    python bench/bench_backtest_uci.py [--repeat 3] [--zip PATH]

The floor is a bare ``csv.reader`` pass over the same zip member (decompress, decode, split, nothing
else). The backtest reads the same zip through mappings/servicenow.yaml (141,712 rows -> 24,918
tickets), then replays it with bench/rules-uci and with the shipped default rules. Every measurement
runs in its own child process (cold caches, as a CLI run), so each reports its own peak RSS
(``ru_maxrss``); the best of ``--repeat`` runs is shown, with the highest peak seen. Times are the child's
CPU time (``time.process_time``): on a shared machine wall time also counts waiting for a core; wall
times are printed beside them. An idle child (same imports, no work) gives the interpreter's footprint.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_ZIP = ROOT.parent / "shared" / "data" / "uci-incident-event-log" / "incident_event_log.zip"
RULES = {"rules-uci": ROOT / "bench" / "rules-uci", "default": ROOT / "rules"}


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(kind: str, zip_path: Path) -> dict[str, Any]:
    from connector.core.mapping import load_mapping
    from connector.detection.rules import load_rules
    from connector.tools.backtest import run_backtest

    if kind == "idle":
        return {"seconds": 0.0, "wall": 0.0, "peak_kib": _peak_kib()}
    if kind == "csv":
        started, cpu = time.perf_counter(), time.process_time()
        with zipfile.ZipFile(zip_path) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".csv"))
            with archive.open(name) as raw:
                rows = sum(1 for _ in csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")))
        return {"seconds": time.process_time() - cpu, "wall": time.perf_counter() - started, "peak_kib": _peak_kib(),
                "rows": rows}
    ruleset = load_rules([RULES[kind]])
    mapping, errors = load_mapping(ROOT / "mappings" / "servicenow.yaml")
    if ruleset.errors or mapping is None:
        raise SystemExit("\n".join(map(str, ruleset.errors + errors)))
    started, cpu = time.perf_counter(), time.process_time()
    result = run_backtest(zip_path, ruleset.rules, lambda _: mapping)
    return {"seconds": time.process_time() - cpu, "wall": time.perf_counter() - started, "peak_kib": _peak_kib(),
            "tickets": result.tickets, "major_incidents": len(result.incidents), "skipped": result.skipped}


def measure(kind: str, zip_path: Path, repeat: int) -> dict[str, Any]:
    runs = []
    for _ in range(repeat):
        command = [sys.executable, __file__, "--zip", str(zip_path), "--child", kind]
        runs.append(json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout))
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "peak_kib": max(r["peak_kib"] for r in runs), "all_seconds": [r["seconds"] for r in runs],
            "best_wall": min(r["wall"] for r in runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--zip", type=Path, default=DEFAULT_ZIP)
    parser.add_argument("--child", choices=["idle", "csv", *RULES], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.zip)))
        return
    if not args.zip.is_file():
        raise SystemExit(f"{args.zip}: not found (see ../shared/data/README.md)")

    print(f"python {sys.version.split()[0]}, {args.zip.name}, best of {args.repeat} runs, one child process per run")
    idle = measure("idle", args.zip, 1)
    floor = measure("csv", args.zip, args.repeat)
    print(f"{'measurement':<26} {'CPU s':>6} {'runs CPU s':>16} {'x csv':>6} {'wall s':>7} {'x csv':>6} {'peak RSS MiB':>13}  result")
    print(f"{'idle interpreter':<26} {'':>6} {'':>16} {'':>6} {'':>7} {'':>6} {idle['peak_kib'] / 1024:>13.1f}")
    rows = [("bare csv.reader pass", floor, f"{floor['rows']:,} rows")]
    for kind in RULES:
        run = measure(kind, args.zip, args.repeat)
        rows.append((f"run_backtest {kind}", run, f"{run['tickets']:,} tickets, {run['major_incidents']} major incidents, "
                                                f"{run['skipped']} skipped"))
    for label, run, result in rows:
        print(f"{label:<26} {run['seconds']:>6.2f} {' '.join(f'{s:.2f}' for s in run['all_seconds']):>16} "
              f"{run['seconds'] / floor['seconds']:>6.2f} {run['best_wall']:>7.2f} {run['best_wall'] / floor['best_wall']:>6.2f} "
              f"{run['peak_kib'] / 1024:>13.1f}  {result}")


if __name__ == "__main__":
    main()
