"""The cold-start experiment's pipeline, seeded and small: two NeMig-format scenarios (English + German, tiny
synthetic copies), ID-only vs pretrained text, unified vs per-scenario, two seeds, through the installed
``unirec-train`` and the table generator of ``experiments/text_cold_start`` (never-seen rows, p-values)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.unit.test_scenarios_loaders import write_dataset
from tests.unit.test_text_embedding import nemig_files
from unirec_lab.results.cold_start import main as table_main

pytestmark = pytest.mark.slow
SC = "scenario=[news_nemig,news_nemig_de]"


def _fields(f: str) -> list[str]:
    return [f"scenarios.news_nemig.source.item_fields={f}", f"scenarios.news_nemig_de.source.item_fields={f}"]


def test_text_vs_ids_table_on_tiny_nemig(tmp_path: Path):
    raw = tmp_path / "raw"
    write_dataset(raw, "news/nemig_en", nemig_files(n_users=30, seed=0))
    write_dataset(raw, "news/nemig_de", nemig_files(n_users=30, seed=1))
    env = {**os.environ, "UNIREC_RAW_DIR": str(raw), "UNIREC_ROOT": str(tmp_path), "WANDB_MODE": "offline",
           "OMP_NUM_THREADS": "1"}
    out = tmp_path / "multirun"
    for rep, fields, ids in (("id", "[]", "true"), ("text", "[text_vec]", "false")):
        cmd = [sys.executable, "-m", "unirec_lab.train", "-m", SC, *_fields(fields), f"backbone.item_id_embedding={ids}",
               "seed=1,2", "model=unified,per_scenario", f"experiment_name=text_cold_start_{rep}",
               f"hydra.sweep.dir={out / rep}", "debug=fast", "num_threads=1", "logger=none",
               "scenarios.news_nemig.source.val_frac=0.2", "scenarios.news_nemig.source.test_frac=0.2",
               "scenarios.news_nemig_de.source.val_frac=0.2", "scenarios.news_nemig_de.source.test_frac=0.2"]
        r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
    assert table_main([str(out), "--out", str(tmp_path / "table")]) == 0
    md = (tmp_path / "table" / "table.md").read_text()
    assert "never seen" in md and "p vs id" in md
    long = pd.read_csv(tmp_path / "table" / "table.csv")
    assert set(long["scenario"]) == {"news_nemig", "news_nemig_de"}
    assert {"id/unified", "id/per_scenario", "text/unified", "text/per_scenario"} <= set(long["model"])
    unseen = long[long["metric"] == "auc_never_seen"]
    assert len(unseen) == 8 and (unseen["seeds"] == 2).all()  # both seeds measured the never-seen slice
    text_rows = [line for line in md.splitlines() if "| text " in line]
    assert text_rows and all("(n=2)" in line for line in text_rows)  # paired over the two seeds
