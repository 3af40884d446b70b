"""experiments/reproduce_swr_movielens: a short seeded run of the experiment's config (SharedBottom, one seed, one
epoch) lands on expected.yaml's ``smoke`` numbers, so a change that moves the pipeline's results shows here
without the hour-long table. Skipped when ML-1M is absent."""

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
EXP = ROOT / "experiments" / "reproduce_swr_movielens"
RAW = default_raw_dir()


@pytest.mark.skipif(not (RAW / "movies" / "ml1m" / "users.dat").is_file(),
                    reason=f"ML-1M not at {RAW}/movies/ml1m (set UNIREC_RAW_DIR)")
def test_short_seeded_run_matches_expected(tmp_path):
    smoke = yaml.safe_load((EXP / "expected.yaml").read_text())["smoke"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "UNIREC_RAW_DIR": str(RAW),
           "UNIREC_ROOT": str(ROOT)}
    args = ["experiment=swr_movielens", f"model.name={smoke['model']}", *smoke["overrides"], f"seed={smoke['seed']}",
            f"trainer.max_epochs={smoke['epochs']}", "callbacks.early_stopping=null", "logger=none",
            f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run([sys.executable, "-m", "unirec_lab.train", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    test = json.loads((tmp_path / "run" / "result.json").read_text())["test"]
    for scenario, metrics in smoke["test"].items():
        for metric, want in metrics.items():
            got = test[scenario][metric]
            assert abs(got - want) <= smoke["tol"], f"{scenario} {metric}: {got:.4f}, expected {want:.4f} ± {smoke['tol']}"
