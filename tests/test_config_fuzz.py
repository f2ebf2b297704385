"""Seeded fuzzing of rule, process, mapping and rule-test files (``tests/config_fuzz.py``): every mutant gets
located errors or, when it loads, runs through the engine, the planner or the mapping without an exception.
The bench run (``bench/bench_fuzz_config.py``) does the same with thousands of files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.config_fuzz import KINDS, SEEDS, corpus, run_one, write_mutant

MUTANTS = 600
SEED = 20261127


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> list:
    folder = tmp_path_factory.mktemp("fuzz")
    for kind, paths in SEEDS.items():  # warm up: the first call of each kind imports what it runs
        run_one(kind, paths[0])
    return [run_one(kind, write_mutant(folder, i, kind, text)) for i, (kind, text) in enumerate(corpus(MUTANTS, SEED))]


def test_no_mutant_raises_anything_but_located_errors(outcomes: list) -> None:
    crashes = Counter(o.exception for o in outcomes if o.crash)
    assert not crashes, next(o.crash for o in outcomes if o.crash)


def test_no_mutant_takes_two_seconds(outcomes: list) -> None:
    slow = [(i, o.kind, round(o.seconds, 2)) for i, o in enumerate(outcomes) if o.seconds > 2]
    assert not slow


@pytest.mark.parametrize("kind", KINDS)
def test_mutants_reach_the_stages_after_the_loader(outcomes: list, kind: str) -> None:
    """A fuzzer whose mutants all fail to parse tests only the parser: a share must load and run on."""
    mine = [o for o in outcomes if o.kind == kind]
    loaded = [o for o in mine if o.stage != "load"]
    assert len(loaded) >= len(mine) // 20, Counter(o.stage for o in mine)
    assert any(o.errors for o in mine if o.stage == "load")


def test_the_corpus_is_the_same_for_the_same_seed() -> None:
    assert corpus(50, SEED) == corpus(50, SEED)
    assert corpus(50, SEED) != corpus(50, SEED + 1)


def test_the_seed_files_themselves_load_and_run(tmp_path: Path) -> None:
    for kind, paths in SEEDS.items():
        for path in paths:
            outcome = run_one(kind, path)
            assert outcome.crash is None and outcome.errors == 0 and outcome.stage != "load", (path, outcome)
