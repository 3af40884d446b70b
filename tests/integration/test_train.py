"""End to end: compose the real config, train, select, test the best checkpoint, write result.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from unirec_lab.train import train

from helpers import evaluate_checkpoint

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ["ecommerce", "social", "education", "news"]
METRICS = ["auc", "logloss", "gauc", "ndcg@10"]


def read_result(cfg) -> dict:
    return json.loads((Path(cfg.paths.output_dir) / "result.json").read_text())


def test_one_epoch_writes_result_with_all_four_scenarios(cfg_factory):
    cfg = cfg_factory(["trainer.max_epochs=1", "logger=csv"])
    score = train(cfg)
    r = read_result(cfg)
    assert r["status"] == "completed" and r["model"] == "unified" and r["scenarios"] == SCENARIOS
    assert set(r["test"]) == set(SCENARIOS)
    for s in SCENARIOS:
        assert set(METRICS) <= set(r["test"][s])
        assert 0.0 <= r["test"][s]["auc"] <= 1.0 and r["test"][s]["rows"] > 0
    assert r["selection"]["monitor"] == "val/mean/auc" and r["selection"]["best_epoch"] == 0
    assert score == pytest.approx(r["selection"]["best_score"])
    assert r["num_parameters"] > 0 and r["train_samples_per_second"] > 0 and r["wall_seconds"] > 0
    assert r["git_sha"] and r["packages"]["torch"] and r["seed"] == cfg.seed
    assert r["config"]["model"]["name"] == "unified" and "backbone.embedding_dim" in r["config_flat"]
    assert (Path(cfg.paths.output_dir) / "csv" / "metrics.csv").is_file()
    assert str(cfg.seed) in r["run_name"] and f"p{r['num_parameters']}" in r["run_name"]
    for s in SCENARIOS:  # cold-start slices partition each scenario's test rows
        sl = r["test_slices"][s]
        assert sl["cold_user"]["rows"] + sl["warm_user"]["rows"] == r["test"][s]["rows"]
        assert sum(sl[k]["rows"] for k in ("cold_item", "warm_item") if k in sl) == r["test"][s]["rows"]


def test_per_scenario_baseline_trains_one_model_per_scenario(cfg_factory):
    cfg = cfg_factory(["model=per_scenario", "trainer.max_epochs=1", "logger=none"])
    train(cfg)
    r = read_result(cfg)
    assert r["mode"] == "separate" and set(r["test"]) == set(SCENARIOS)
    assert set(r["selection"]) == set(SCENARIOS)  # each scenario selects its own best epoch
    for s in SCENARIOS:
        ckpt_dir = Path(cfg.paths.output_dir) / "per_scenario" / s / "checkpoints"
        assert any(ckpt_dir.glob("best-epoch*.ckpt"))
        assert r["data"][s]["scenario"] == s


def test_test_uses_the_best_checkpoint_not_the_last(cfg_factory):
    cfg = cfg_factory(["trainer.max_epochs=3", "logger=none", "callbacks.early_stopping=null",
                       "+extra_callbacks=[{_target_: helpers.SabotageAfterEpoch, epoch: 1}]"])
    train(cfg)
    r = read_result(cfg)
    assert r["selection"]["best_epoch"] == 0
    out = Path(cfg.paths.output_dir) / "checkpoints"
    best = evaluate_checkpoint(out / "best-epoch000.ckpt", cfg)
    last = evaluate_checkpoint(out / "latest.ckpt", cfg)
    for s in SCENARIOS:
        assert r["test"][s]["auc"] == pytest.approx(best[s]["auc"], abs=1e-9)
    mean_best = sum(best[s]["auc"] for s in SCENARIOS) / 4
    mean_last = sum(last[s]["auc"] for s in SCENARIOS) / 4
    assert mean_best > mean_last + 0.03  # the last weights are noise; testing them would be caught


def test_per_scenario_selection_tests_each_scenario_on_its_own_best_epoch(cfg_factory):
    cfg = cfg_factory(["trainer.max_epochs=3", "logger=none", "selection.scope=per_scenario",
                       "callbacks.early_stopping.patience=5"])
    score = train(cfg)
    r = read_result(cfg)
    assert r["mode"] == "joint" and set(r["selection"]) == set(SCENARIOS)
    assert len({r["selection"][s]["best_epoch"] for s in SCENARIOS}) > 1  # else this test could not tell
    out = Path(cfg.paths.output_dir)
    for s in SCENARIOS:
        aucs = [h["metrics"][s]["auc"] for h in r["val_history"]]
        sel = r["selection"][s]
        assert sel["monitor"] == f"val/{s}/auc" and sel["best_epoch"] == aucs.index(max(aucs))
        assert sel["best_score"] == pytest.approx(max(aucs), abs=1e-6)
        ckpt = out / sel["best_checkpoint"]
        assert ckpt.name == f"best-{s}-epoch{sel['best_epoch']:03d}.ckpt"
        # the reported test metric is that checkpoint's, recomputed independently of the trainer
        assert r["test"][s]["auc"] == pytest.approx(evaluate_checkpoint(ckpt, cfg)[s]["auc"], abs=1e-9)
        assert sum(v["rows"] for k, v in r["test_slices"][s].items() if k.endswith("_user")) == r["test"][s]["rows"]
    assert score == pytest.approx(sum(r["selection"][s]["best_score"] for s in SCENARIOS) / 4)
    assert not any((out / "checkpoints").glob("best-epoch*.ckpt"))  # no unused one-for-all checkpoint written


def test_per_scenario_selection_is_refused_for_a_monitor_it_cannot_split(cfg_factory):
    from unirec_lab.engine.config import ConfigError

    cfg = cfg_factory(["selection.scope=per_scenario", "selection.monitor=val/ecommerce/auc"])
    with pytest.raises(ConfigError, match="per-scenario selection needs val/mean/<metric>"):
        train(cfg)


def test_wandb_offline_leaves_an_offline_run(cfg_factory, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", "")
    cfg = cfg_factory(["trainer.max_epochs=1", "logger=wandb", "experiment_name=pytest"])
    train(cfg)
    runs = list((Path(cfg.paths.output_dir) / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("run-*.wandb"))
    import wandb

    assert wandb.run is None  # finished


@pytest.mark.slow
def test_two_job_multirun(tmp_path):
    from conftest import tiny_overrides

    env = {**os.environ, "UNIREC_CACHE_DIR": str(tmp_path / "cache"), "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "unirec_lab.train", "-m", "seed=1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}",
           "logger=wandb", "experiment_name=pytest_sweep", *tiny_overrides(), "trainer.max_epochs=1"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = sorted((tmp_path / "sweep").glob("*/result.json"))
    assert len(results) == 2
    seeds = {json.loads(p.read_text())["seed"] for p in results}
    assert seeds == {1, 2}
    # one W&B run per job, each finished (an unfinished offline run has no run-*.wandb footer to sync)
    for job in ("0", "1"):
        runs = list((tmp_path / "sweep" / job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))


@pytest.mark.slow
def test_optuna_sweep_returns_the_selection_metric(tmp_path):
    from conftest import tiny_overrides

    env = {**os.environ, "UNIREC_CACHE_DIR": str(tmp_path / "cache"), "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "unirec_lab.train", "-m", "sweep=optuna", "hydra.sweeper.n_trials=2",
           "hydra.sweeper.sampler.n_startup_trials=1", f"hydra.sweep.dir={tmp_path / 'tune'}", "logger=none",
           *tiny_overrides(), "trainer.max_epochs=1"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in (tmp_path / "tune").glob("*/result.json")]
    assert len(results) == 2
    best = yaml_load(tmp_path / "tune" / "optimization_results.yaml")
    assert best["best_value"] == pytest.approx(max(r["selection"]["best_score"] for r in results))


def yaml_load(path):
    import yaml

    return yaml.safe_load(path.read_text())


def test_full_ranking_metrics_are_those_of_the_tested_checkpoint(cfg_factory):
    from unirec_lab.cli.explain import load_run
    from unirec_lab.evaluation.full_ranking import full_ranking_metrics

    cfg = cfg_factory(["trainer.max_epochs=2", "logger=none", "selection.scope=per_scenario",
                       "full_ranking.scenarios=[ecommerce,news]", "full_ranking.ks=[5]", "full_ranking.max_users=40"])
    train(cfg)
    r = read_result(cfg)
    assert set(r["test_full_ranking"]) == {"ecommerce", "news"}
    for s in ("ecommerce", "news"):
        got = r["test_full_ranking"][s]
        assert 0 < got["users"] <= 40 and 0 <= got["recall@5"] <= 1 and 0 <= got["ndcg@5"] <= 1
        _, dm, model = load_run(Path(cfg.paths.output_dir), s)  # the checkpoint the run tested s with
        again = full_ranking_metrics(model, dm.splits, dm.scenario_names, s, dm.space.item_scenario, ks=[5],
                                     max_users=40, seed=cfg.seed)
        assert again == pytest.approx(got)


def test_full_ranking_of_an_unselected_scenario_is_refused(cfg_factory):
    from unirec_lab.engine.config import ConfigError

    with pytest.raises(ConfigError, match=r"full_ranking.scenarios=\['sports'\]"):
        train(cfg_factory(["full_ranking.scenarios=[sports]"]))
