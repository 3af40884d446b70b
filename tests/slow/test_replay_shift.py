"""End to end: ``unirec-replay`` trains on the past and walks a test period with a planted preference flip; the
updated arm must recover (paired CI above 0) where the static model ranks backwards."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow

SHIFT = ["scenario=synthetic_social", "+scenarios.social.source.shift_at=0.75",
         "+scenarios.social.source.test_frac=0.3", "+scenarios.social.source.signal=4",
         "+scenarios.social.source.popularity_effect=0", "scenarios.social.source.num_users=300",
         "scenarios.social.source.num_items=200", "scenarios.social.source.rows_per_user=30",
         "trainer.max_epochs=3", "num_threads=1", "logger=none"]


def test_replay_on_a_planted_shift(tmp_path, monkeypatch):
    from unirec_lab.cli.replay import main

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "replay"
    assert main(["--out", str(out), "--windows", "3", "--bootstrap", "50", "--epochs", "3", "--batch-size", "128",
                 "--lr", "0.01", "--retrain", "--", *SHIFT, f"paths.cache_dir={tmp_path / 'cache'}"]) == 0
    res = json.loads((out / "replay.json").read_text())
    overall = {r["arm"]: r for r in res["overall"]}
    assert set(overall) == {"static", "updated", "retrained"} and res["num_windows"] == 3
    static, upd = overall["static"]["metrics"]["auc"], overall["updated"]["metrics"]["auc"]
    assert static["value"] < 0.45, static  # the flip is real: the past model ranks backwards
    assert upd["delta"] > 0.1 and upd["delta_lo"] > 0, upd
    assert overall["updated"]["seconds"] > 0 and overall["retrained"]["seconds"] > 0
    assert [r["window"] for r in res["windows"] if r["arm"] == "updated"] == [1, 2]
    table = (out / "replay.md").read_text()
    assert "| social | all | updated |" in table and "Δauc vs static [95% CI]" in table
    assert (out / "replay.csv").read_text().startswith("scenario,window,arm,rows")
    assert "\\toprule" in (out / "replay.tex").read_text()
    assert (out / "replay_social_auc.png").read_bytes()[:4] == b"\x89PNG"
