"""Every experiment folder is complete, and a generated table matches its expected.yaml."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted(p for p in (ROOT / "experiments").iterdir() if p.is_dir())
spec = importlib.util.spec_from_file_location("check_expected", ROOT / "scripts" / "check_expected.py")
check_expected = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_expected)


@pytest.mark.parametrize("exp", EXPERIMENTS, ids=[p.name for p in EXPERIMENTS])
def test_experiment_has_readme_and_run_script(exp):
    assert (exp / "README.md").is_file() and (exp / "run.sh").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("exp", EXPERIMENTS, ids=[p.name for p in EXPERIMENTS])
def test_generated_table_matches_expected(exp):
    expected = exp / "expected.yaml"
    if not (expected.is_file() and "cells" in expected.read_text()):
        pytest.skip(f"{exp.name}: no per-cell expected.yaml (checked by its own test, or nothing to check)")
    assert (exp / "table.csv").is_file(), f"{exp.name}: expected.yaml has cells but table.csv is missing"
    assert check_expected.check(exp) == []
