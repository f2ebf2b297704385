"""`pip install .` ships what `mim` needs outside the source tree: default rules, rule tests, mappings and the
sample, found where the installed package looks for them."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_ships_rules_mappings_and_sample_where_default_dir_looks(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("mim_connector-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("cli.py", "connector/defaults/rules/default.yaml", "connector/defaults/rules/process.yaml",
                     "connector/defaults/rules/tests/default.yaml", "connector/defaults/mappings/servicenow.yaml",
                     "connector/defaults/mappings/jira.yaml", "connector/samples/storm.jsonl",
                     "connector/platforms/servicenow/client.py", "connector/sim/jira/server.py"):
        assert expected in names, expected
    # the installed package looks next to itself when there is no source tree around it
    installed = tmp_path / "site" / "connector"
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    probe = subprocess.run([sys.executable, "-c", "from connector.core.settings import default_dir; "
                            "print(default_dir('rules')); print(default_dir('mappings'))"],
                           cwd=tmp_path / "site", capture_output=True, text=True, check=True,
                           env={"PYTHONPATH": str(tmp_path / "site"), "PATH": ""})
    rules_dir, mappings_dir = probe.stdout.split()
    assert Path(rules_dir) == installed / "defaults" / "rules" and (Path(rules_dir) / "default.yaml").is_file()
    assert Path(mappings_dir) == installed / "defaults" / "mappings"
