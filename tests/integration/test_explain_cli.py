"""unirec-explain on a trained run: the tested checkpoint, the user's rows, scores that match the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from unirec_lab.cli.explain import checkpoint_for, explain_user, load_run, main
from unirec_lab.results.record import RunRecord
from unirec_lab.train import train


@pytest.mark.parametrize("overrides", [["selection.scope=per_scenario"], ["model=per_scenario"]])
def test_explain_a_trained_run(cfg_factory, overrides, capsys):
    cfg = cfg_factory(["trainer.max_epochs=2", "logger=none", "backbone=din", *overrides])
    train(cfg)
    run = Path(cfg.paths.output_dir)
    out = run / "why.json"
    assert main([str(run), "--scenario", "news", "--top", "4", "--steps", "256", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "logit = prior + profile + history + item attr" in printed
    expl = json.loads(out.read_text())
    cands = expl["candidates"]
    assert len(cands) == min(4, expl["rows"]) and expl["positives"] >= 1
    assert [c["logit"] for c in cands] == sorted((c["logit"] for c in cands), reverse=True)
    for c in cands:  # the decomposition adds up (up to the reported residual, which is small)
        assert c["prior"] + c["profile"] + c["history"] + c["item_attr"] + c["residual"] == pytest.approx(c["logit"])
        assert abs(c["residual"]) < 0.05 * max(abs(c["logit"] - c["prior"]), 0.1)
    record = RunRecord.read(run / "result.json")
    ckpt, keys = checkpoint_for(run, record, "news")  # the checkpoint the run tested news with
    assert ckpt.is_file() and (ckpt.name.startswith("best-news-") if record.mode == "joint"
                               else ckpt.parent.parent.name == "news" and keys == ["news"])
    # the scores are the tested model's: recompute them from the loaded checkpoint with a plain forward
    _, dm, model = load_run(run, "news")
    again = explain_user(dm, model, "news", user=expl["user"], top=4, steps=8)
    rows = dm.splits["test"]
    s_idx = dm.scenario_names.index("news")
    m = (rows["scenario"] == s_idx) & (rows["user"] == expl["user"] + dm.space.user_offset["news"] + 1)
    with torch.no_grad():
        logits = model({k: v[m] for k, v in rows.items()})
    assert sorted(logits.tolist(), reverse=True)[:len(cands)] == pytest.approx([c["logit"] for c in cands], abs=1e-5)
    assert [c["item"] for c in again["candidates"]] == [c["item"] for c in cands]


def test_explain_errors_name_the_problem(cfg_factory, tmp_path, capsys):
    assert main([str(tmp_path / "nope"), "--scenario", "news"]) == 2
    assert "result.json: not found" in capsys.readouterr().err
    cfg = cfg_factory(["trainer.max_epochs=1", "logger=none"])
    train(cfg)
    assert main([cfg.paths.output_dir, "--scenario", "sports"]) == 2
    assert "--scenario 'sports': the run covers" in capsys.readouterr().err
    assert main([cfg.paths.output_dir, "--scenario", "news", "--user", "999999"]) == 2
    assert "--user 999999: no test rows" in capsys.readouterr().err
