"""bench/bpi2014_interactions.py: BPI Challenge 2014 service-desk interactions as canonical JSONL (on a small
archive in the file's own format; the real one is in ../shared/data and is read by the benchmarks)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "bpi2014_interactions.py"
HEADER = ("CI Name (aff);CI Type (aff);CI Subtype (aff);Service Comp WBS (aff);Interaction ID;Status;Impact;Urgency;"
          "Priority;Category;KM number;Open Time (First Touch);Close Time;Closure Code;First Call Resolution;"
          "Handle Time (secs);Related Incident")


def archive(tmp_path: Path) -> Path:
    rows = [
        "DTA000057;application;Desktop Application;WBS000094;SD0108535;Closed;4;4;4;incident;KM0001;"
        "11-2-2014 9:09;11-2-2014 9:30;Other;N;100;IM0035768",
        "DTA000057;application;Desktop Application;WBS000094;SD0108536;Closed;4;4;5;incident;KM0001;"
        "11-2-2014 9:10;11-2-2014 9:30;Other;N;100;#MULTIVALUE",
        "#N/B;#N/B;#N/B;WBS000073;SD0000007;Closed;5;4;#N/B;request for information;KM0002;"
        "29-6-2013 23:59;1-7-2013 9:00;Other;Y;50;",
        "SBA000010;application;Server Based Application;WBS000186;SD0057912;Closed;4;4;4;incident;KM0003;"
        "31-12-2013 23:30;1-1-2014 9:00;Other;N;60;IM0019801",
        ";;;;;;;;;;;;;;;;",
    ]
    path = tmp_path / "detail_interaction.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("Detail Interaction.csv", "\r\n".join([HEADER, *rows]).encode("latin-1") + b"\r\n")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_interactions_become_canonical_tickets_with_the_desks_links_as_parent(tmp_path: Path) -> None:
    out = tmp_path / "all.jsonl"
    done = run("--zip", str(archive(tmp_path)), "--out", str(out))
    assert done.returncode == 0, done.stderr
    tickets = lines(out)
    assert [t["id"] for t in tickets] == ["SD0000007", "SD0057912", "SD0108535", "SD0108536"]  # in time order
    assert tickets[2] == {"id": "SD0108535", "key": "SD0108535", "opened_at": "2014-02-11T09:09:00+01:00",
                          "service": "WBS000094", "ci": "DTA000057", "category": "incident", "parent": "IM0035768",
                          "priority": 4, "impact": 4, "urgency": 4}
    # '#N/B' is no value, '#MULTIVALUE' an unknown one: neither becomes a CI, a priority or a label
    assert "ci" not in tickets[0] and "priority" not in tickets[0] and "parent" not in tickets[0]
    assert "parent" not in tickets[3]
    assert tickets[0]["opened_at"] == "2013-06-29T23:59:00+02:00"  # summer time in Amsterdam
    assert "4 interactions" in done.stderr and "skipped" not in done.stderr  # an empty row is no interaction


def test_the_tuning_and_acceptance_files_split_at_new_year_local_time(tmp_path: Path) -> None:
    tuning, acceptance = tmp_path / "tuning.jsonl", tmp_path / "acceptance.jsonl"
    done = run("--zip", str(archive(tmp_path)), "--tuning", str(tuning), "--acceptance", str(acceptance))
    assert done.returncode == 0, done.stderr
    assert [t["id"] for t in lines(tuning)] == ["SD0000007", "SD0057912"]  # 2013-12-31 23:30 local is still 2013
    assert [t["id"] for t in lines(acceptance)] == ["SD0108535", "SD0108536"]


def test_it_needs_an_output_and_the_archive(tmp_path: Path) -> None:
    assert run("--zip", str(archive(tmp_path))).returncode == 2
    assert run("--zip", str(tmp_path / "nope.zip"), "--out", str(tmp_path / "x")).returncode == 2
