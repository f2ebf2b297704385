"""BPI Challenge 2014 (Rabobank) service-desk interactions as canonical JSONL, for ``mim backtest --score``.

    python bench/bpi2014_interactions.py --out bpi2014-all.jsonl
    python bench/bpi2014_interactions.py --tuning bpi2014-tuning.jsonl --acceptance bpi2014-acceptance.jsonl

Reads ``Detail Interaction.csv`` straight from ``../shared/data/bpi2014-rabobank/detail_interaction.zip``
(no extraction) and writes one canonical ticket per interaction, in time order:

=================  ==========================================================================================
canonical          BPI 2014 column
=================  ==========================================================================================
``id``, ``key``    ``Interaction ID`` (``SD0000001``)
``opened_at``      ``Open Time (First Touch)``: ``d-m-yyyy H:MM``, local time of the Netherlands, written as
                   ISO 8601 with its offset (``Europe/Amsterdam``, DST-correct)
``ci``             ``CI Name (aff)``
``service``        ``Service Comp WBS (aff)``
``priority``       ``Priority`` (1..5), also ``impact`` and ``urgency``
``category``       ``Category`` (incident, request for information, complaint...)
``parent``         ``Related Incident``: the incident the desk linked the interaction to (the label)
=================  ==========================================================================================

The file's missing-value markers are handled on purpose: an empty cell and ``#N/B`` (Dutch Excel's
``#N/A``) mean "no value"; ``#MULTIVALUE`` (several values collapsed into one cell, the ids lost) means
"unknown" and is written as no value too, so a ``#MULTIVALUE`` parent is no label (873 interactions). No
``state`` is written: the export holds the final status (``Closed``), not the one the rules would have seen
when the call came in, so the canonical default (``new``) stands for "just opened". No caller is recorded
in the data set.

``--split`` (default ``2014-01-01``, local time) is where the tuning file ends and the acceptance file
starts: ``--tuning`` gets the interactions opened before it, ``--acceptance`` those opened at or after it.
Tune only on the tuning file; the acceptance months are scored independently.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import zipfile
from datetime import datetime
from pathlib import Path
from typing import IO, Iterator
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ZIP = ROOT.parent / "shared" / "data" / "bpi2014-rabobank" / "detail_interaction.zip"
MEMBER = "Detail Interaction.csv"
ZONE = ZoneInfo("Europe/Amsterdam")
MISSING = frozenset({"", "#N/B", "#MULTIVALUE"})
"""Empty, Excel's ``#N/A`` in Dutch, and several values collapsed into one cell (ids lost): no value."""

COLUMNS = {
    "ci": "CI Name (aff)",
    "service": "Service Comp WBS (aff)",
    "id": "Interaction ID",
    "impact": "Impact",
    "urgency": "Urgency",
    "priority": "Priority",
    "category": "Category",
    "opened_at": "Open Time (First Touch)",
    "parent": "Related Incident",
}


def parse_local(text: str) -> datetime:
    """``d-m-yyyy H:MM`` (not zero-padded), Netherlands local time, as an aware datetime."""
    date, _, clock = text.strip().partition(" ")
    day, month, year = (int(p) for p in date.split("-"))
    hour, minute = (int(p) for p in clock.split(":"))
    return datetime(year, month, day, hour, minute, tzinfo=ZONE)


def _value(text: str) -> str | None:
    text = text.strip()
    return None if text in MISSING else text


def _level(text: str) -> int | None:
    value = _value(text)
    if value is None or not value.isdigit() or not 1 <= int(value) <= 5:
        return None
    return int(value)


def interactions(zip_path: Path, problems: list[str]) -> Iterator[tuple[datetime, dict[str, object]]]:
    """Every interaction of the archive as ``(opened, canonical record)``; a row without an id or with an
    unreadable time is reported in ``problems`` and skipped."""
    with zipfile.ZipFile(zip_path) as archive, archive.open(MEMBER) as raw:
        reader = csv.reader(io.TextIOWrapper(raw, encoding="latin-1", newline=""), delimiter=";")
        header = next(reader)
        at = {name: header.index(column) for name, column in COLUMNS.items()}
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            ident = _value(row[at["id"]]) if len(row) > at["id"] else None
            if ident is None or len(row) < len(header):
                problems.append(f"line {reader.line_num}: no interaction id or too few columns")
                continue
            try:
                opened = parse_local(row[at["opened_at"]])
            except ValueError:
                problems.append(f"line {reader.line_num}: {ident}: unreadable open time {row[at['opened_at']]!r}")
                continue
            record: dict[str, object] = {"id": ident, "key": ident, "opened_at": opened.isoformat()}
            for name in ("service", "ci", "category", "parent"):
                value = _value(row[at[name]])
                if value is not None:
                    record[name] = value
            for name in ("priority", "impact", "urgency"):
                level = _level(row[at[name]])
                if level is not None:
                    record[name] = level
            yield opened, record


def write_jsonl(out: IO[str], records: list[tuple[datetime, dict[str, object]]]) -> int:
    for _, record in records:
        out.write(json.dumps(record, separators=(",", ":")) + "\n")
    return len(records)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, default=DEFAULT_ZIP, help="detail_interaction.zip")
    parser.add_argument("--out", type=Path, help="every interaction")
    parser.add_argument("--tuning", type=Path, help="the interactions opened before --split")
    parser.add_argument("--acceptance", type=Path, help="the interactions opened at or after --split")
    parser.add_argument("--split", default="2014-01-01", help="local date where acceptance starts (YYYY-MM-DD)")
    args = parser.parse_args(argv)
    if not (args.out or args.tuning or args.acceptance):
        parser.error("give --out, --tuning and/or --acceptance")
    if not args.zip.is_file():
        parser.error(f"{args.zip}: not found (see ../shared/data/README.md)")
    split = datetime.fromisoformat(args.split).replace(tzinfo=ZONE)
    problems: list[str] = []
    records = sorted(interactions(args.zip, problems), key=lambda pair: (pair[0], str(pair[1]["id"])))
    before = [pair for pair in records if pair[0] < split]
    after = [pair for pair in records if pair[0] >= split]
    for path, chosen, what in ((args.out, records, "all"), (args.tuning, before, f"before {args.split}"),
                               (args.acceptance, after, f"from {args.split}")):
        if path is None:
            continue
        with open(path, "w", encoding="utf-8") as out:
            count = write_jsonl(out, chosen)
        print(f"{path}: {count:,} interactions ({what})", file=sys.stderr)
    for problem in problems[:10]:
        print(f"skipped {problem}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} rows skipped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
