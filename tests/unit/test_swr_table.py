"""experiments/reproduce_swr_movielens/table.py: mean ± std over seeds next to the published value and the
difference, the pooled total as its own row in table.csv (what check_expected holds), and one-line errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from unirec_lab.results.record import write_result

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("swr_table", ROOT / "experiments/reproduce_swr_movielens/table.py")
swr_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(swr_table)


def _run(root: Path, model: str, seed: int, total: float) -> None:
    test = {d: {"auc": total + 0.001 * i, "logloss": 0.52} for i, d in enumerate(swr_table.DOMAINS)}
    test["all"] = {"auc": total, "logloss": 0.5200 + 0.001 * seed}
    write_result(root / model / f"seed{seed}", {
        "status": "completed", "model": model, "seed": seed, "scenarios": list(swr_table.DOMAINS), "test": test,
        "wall_seconds": 100.0 + seed, "selection": {"best_epoch": 3 + seed}})


def test_table_against_published(tmp_path):
    for seed, auc in ((1, 0.8100), (2, 0.8120), (3, 0.8110)):
        _run(tmp_path / "runs", "sharedbottom", seed, auc)
    assert swr_table.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "table.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| SharedBottom"))
    assert "| 3 " in row and "0.8110 ± 0.0010 (0.8095, +0.0015)" in row  # mean ± std (published, difference)
    assert "0.5220 ± 0.0010 (0.5228, -0.0008)" in row and "| 102 " in row and "| 5.0 " in row
    csv = pd.read_csv(tmp_path / "out" / "table.csv")
    total = csv[(csv.scenario == "all") & (csv.metric == "auc")].iloc[0]
    assert (total["model"], total["n"]) == ("sharedbottom", 3)
    assert total["mean"] == pytest.approx(0.8110) and total["published"] == pytest.approx(0.8095)
    assert set(csv.scenario) == {"all", *swr_table.DOMAINS}


def test_missing_runs_one_line(tmp_path, capsys):
    assert swr_table.main([str(tmp_path / "nope")]) == 2
    assert "is not a directory of runs" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match=r"no result.json under .*empty: run experiments/reproduce_swr_movielens"):
        swr_table.main([str(tmp_path / "empty")])


def test_guard_cut_runs_and_the_schedule_are_reported(tmp_path):
    cfg = {"trainer": {"max_epochs": 40}, "callbacks": {"early_stopping": {"patience": 4}}}
    # (model, seed, epochs run, best epoch, wall s): patience ran out / epoch cap reached / cut by the time guard
    for model, seed, run, best, wall in (("sharedbottom", 1, 9, 4, 600.0), ("sharedbottom", 2, 40, 39, 300.0),
                                         ("ppnet", 1, 4, 2, 300.0)):
        write_result(tmp_path / model / f"seed{seed}", {
            "status": "completed", "model": model, "seed": seed, "scenarios": list(swr_table.DOMAINS),
            "test": {"all": {"auc": 0.81, "logloss": 0.52}}, "wall_seconds": wall, "config": cfg,
            "selection": {"best_epoch": best, "epochs_run": run}})
    df = swr_table.load(tmp_path)
    cut = df.drop_duplicates(["model", "seed"]).set_index(["model", "seed"])["cut"]
    assert cut.to_dict() == {("ppnet", 1): True, ("sharedbottom", 1): False, ("sharedbottom", 2): False}
    # run.sh's order: seed 1 (sharedbottom 600 s, ppnet 300 s on the two slots), then seed 2 (300 s) on the
    # slot that frees first: 15 min of runs end after 10 min
    assert swr_table.schedule_minutes(df) == pytest.approx((20.0, 10.0))
    md, _ = swr_table.render(df)
    assert "| 1              |" in next(line for line in md.splitlines() if line.startswith("| PPNet"))
    assert "sum to 20 min; in run.sh's order on two slots they end after 10 min" in md
