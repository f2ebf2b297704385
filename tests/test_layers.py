"""The package's layers, enforced: every ``connector`` import, at module level or inside a function, points
down the stack ``tools > job > {process, platforms} > detection > core``; ``process`` and ``platforms`` do
not import each other; ``sim`` imports nothing else of the package, and nothing but ``tools`` (the demo)
imports ``sim``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "connector"

RANK = {"core": 0, "detection": 1, "process": 2, "platforms": 2, "job": 3, "tools": 4}
"""Height of each layer: a module may import its own layer and any lower one."""


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name inside ``connector`` (None for the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "connector" else None


def imports_of(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """Every ``connector`` module imported by ``path``: ``(line, module)``, relative imports resolved."""
    module = ".".join(path.relative_to(root).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    package = package.removesuffix(".__init__")
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("connector")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "connector" or target.startswith("connector."):
                if layer_of(target) is None:  # from connector import x: x is the module
                    found += [(node.lineno, f"connector.{alias.name}") for alias in node.names]
                else:
                    found.append((node.lineno, target))
    return found


def violations(root: Path = ROOT) -> list[str]:
    """Every import in ``root/connector`` that breaks the contract, as ``file:line: what``."""
    out = []
    for path in sorted((root / "connector").rglob("*.py")):
        rel = path.relative_to(root)
        own = layer_of(".".join(rel.with_suffix("").parts))
        for line, target in imports_of(path, root):
            other = layer_of(target)
            if own is None or other is None or other == own:
                continue
            where = f"{rel}:{line}: {own} imports {target}"
            if own == "sim":
                out.append(f"{where} (sim imports nothing else of the package)")
            elif other == "sim":
                if own != "tools":
                    out.append(f"{where} (only tools may start a simulator)")
            elif other not in RANK or own not in RANK:
                out.append(f"{where} (unknown layer)")
            elif RANK[other] > RANK[own] or (RANK[other] == RANK[own]):
                out.append(f"{where} ({other} is not below {own})")
    return out


def test_every_connector_module_belongs_to_a_layer() -> None:
    strays = [str(p.relative_to(ROOT)) for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert strays == [], "modules directly under connector/ belong in a layer subpackage"
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()} == set(RANK) | {"sim"}


def test_imports_point_down_the_layers() -> None:
    assert violations() == []


@pytest.mark.parametrize("layer, source, expected", [
    ("detection", "from connector.job.cycle import run_cycle\n", "detection imports connector.job.cycle (job is not below detection)"),
    ("detection", "from ..process import planner\n", "detection imports connector.process (process is not below detection)"),
    ("process", "from connector.platforms import base\n", "process imports connector.platforms (platforms is not below process)"),
    ("job", "def f():\n    from connector.sim.base import SimServer\n", "job imports connector.sim.base (only tools may start a simulator)"),
    ("sim", "from connector.core.ticket import Ticket\n", "sim imports connector.core.ticket (sim imports nothing else"),
], ids=["absolute", "relative", "sibling", "lazy-sim", "sim-imports"])
def test_the_contract_catches_a_forbidden_import(tmp_path: Path, layer: str, source: str, expected: str) -> None:
    package = tmp_path / "connector" / layer
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "probe.py").write_text(source, encoding="utf-8")
    found = violations(tmp_path)
    assert len(found) == 1 and expected in found[0], found
