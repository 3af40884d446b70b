"""The main table still reproduces: one of its runs (unified, seed 1), retrained from scratch with the exact
protocol of experiments/main_unified_vs_single, lands inside expected.yaml's tolerance on every scenario.

Needs the raw data (``<repo>/../shared/data`` or ``$UNIREC_RAW_DIR``); ~2 minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unirec_lab.data.scenarios.raw import default_raw_dir

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
EXP = ROOT / "experiments" / "main_unified_vs_single"


def test_unified_seed_1_reproduces_its_table_cells(tmp_path):
    if not default_raw_dir().is_dir():
        pytest.skip(f"real raw data not found at {default_raw_dir()} (set UNIREC_RAW_DIR)")
    expected = {(c["model"], c["scenario"], c["metric"]): c for c in yaml.safe_load((EXP / "expected.yaml").read_text())["cells"]}
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-m", "unirec_lab.train", "experiment=main_real", "model=unified", "seed=1",
                           "logger=none", f"hydra.run.dir={tmp_path}"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    for scenario, metrics in result["test"].items():
        for metric in ("auc", "gauc", "ndcg@10"):
            cell = expected[("unified", scenario, metric)]
            assert abs(metrics[metric] - cell["mean"]) <= cell["tol"], (scenario, metric, metrics[metric], cell)
