"""experiments/replay_updating: the checked-in replay numbers agree with expected.yaml, the checked-in tables are
what the renderer makes of the checked-in replay.json, and the pipeline runs on real data (a short seeded smoke).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from unirec_lab.results.tables import markdown_table
from unirec_lab.serve.replay import table_cells

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXP = ROOT / "experiments" / "replay_updating"
RAW = Path(os.environ.get("UNIREC_RAW_DIR") or ROOT.parent / "shared" / "data")


def expected() -> dict:
    return yaml.safe_load((EXP / "expected.yaml").read_text())


@pytest.mark.parametrize("scenario", ["social", "news"])
def test_checked_in_replay_matches_expected(scenario):
    exp = expected()["scenarios"][scenario]
    res = json.loads((EXP / scenario / "replay.json").read_text())
    assert res["num_windows"] == exp["windows"]
    overall = {r["arm"]: r["metrics"] for r in res["overall"]}
    for arm, metrics in exp["delta_vs_static"].items():
        for m, e in metrics.items():
            cell = overall[arm][m]
            assert abs(cell["delta"] - e["mean"]) <= e["tol"], (scenario, arm, m, cell["delta"], e)
            if e.get("ci_above_zero"):
                assert cell["delta_lo"] > 0, (scenario, arm, m, cell)
    header, rows = table_cells(res)
    assert (EXP / scenario / "replay.md").read_text() == markdown_table(header, rows, pad=False) + "\n"


def test_replay_smoke_on_real_ciao(tmp_path, monkeypatch):
    """Seeded and short: 20 training batches, 2 windows, 20 bootstrap draws (the protocol, not the numbers)."""
    ciao = RAW / "social" / "ciao"
    if not (ciao / "rating_with_timestamp.mat").is_file():
        pytest.skip(f"Ciao raw data not found under {ciao} (set UNIREC_RAW_DIR)")
    from unirec_lab.cli.replay import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UNIREC_RAW_DIR", str(RAW))
    out = tmp_path / "replay"
    assert main(["--out", str(out), "--windows", "2", "--bootstrap", "20", "--", "scenario=social",
                 "+scenarios.social.source.split=temporal", "trainer.max_epochs=1",
                 "+trainer.limit_train_batches=20", "num_threads=1", "logger=none", "seed=1"]) == 0
    res = json.loads((out / "replay.json").read_text())
    assert [r["arm"] for r in res["overall"]] == ["static", "updated"] and res["num_windows"] == 2
    assert res["overall"][1]["seconds"] > 0
