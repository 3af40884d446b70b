"""scripts/check_expected.py: freezing a generated table and catching a drift."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("check_expected", ROOT / "scripts" / "check_expected.py")
check_expected = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_expected)


def _table(exp: Path, auc: float) -> None:
    pd.DataFrame([{"group": "A", "model": "unified", "scenario": "news", "metric": "auc", "mean": auc,
                   "std": 0.002, "n": 5}]).to_csv(exp / "table.csv", index=False)


def test_write_then_check_then_drift(tmp_path):
    _table(tmp_path, 0.7)
    assert check_expected.main([str(tmp_path), "--write"]) == 0
    assert check_expected.main([str(tmp_path)]) == 0
    _table(tmp_path, 0.7 + 0.0059)  # tol = max(0.005, 3 * 0.002) = 0.006
    assert check_expected.main([str(tmp_path)]) == 0
    _table(tmp_path, 0.7 + 0.0061)
    assert check_expected.main([str(tmp_path)]) == 1
