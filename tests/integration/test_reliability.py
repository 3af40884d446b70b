"""Reliability: kill-and-resume equality, determinism, bad input, NaN loss, sweep fault isolation, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from unirec_lab.train import train

from conftest import compose_cfg, tiny_overrides
from helpers import evaluate_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"


def cli(tmp_path: Path, args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "UNIREC_CACHE_DIR": str(tmp_path / "cache"), "WANDB_MODE": "disabled",
           "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "unirec_lab.train", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


def test_same_seed_same_metrics_other_seed_differs(tmp_path):
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        cfg = compose_cfg(tmp_path / name, [*tiny_overrides(), "logger=none", f"seed={seed}"])
        train(cfg)
        runs[name] = result(tmp_path / name)
    assert runs["a"]["test"] == runs["b"]["test"]
    assert runs["a"]["selection"]["best_epoch"] == runs["b"]["selection"]["best_epoch"]
    assert runs["a"]["test"] != runs["c"]["test"]


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["global", "per_scenario"])
def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path, scope):
    common = [*tiny_overrides(), "logger=none", "trainer.max_epochs=4", "callbacks.early_stopping.patience=10",
              "backbone.dropout=0.1",  # dropout: the RNG state must be restored too
              f"selection.scope={scope}"]  # per_scenario: every scenario's best checkpoint survives the crash
    ok = cli(tmp_path, [f"hydra.run.dir={tmp_path / 'full'}", *common])
    assert ok.returncode == 0, ok.stderr[-2000:]
    steps_per_epoch = result(tmp_path / "full")["train_rows"] // 4 // 256 + 1
    killed = cli(tmp_path, [f"hydra.run.dir={tmp_path / 'crash'}", *common,
                            f"+extra_callbacks=[{{_target_: helpers.KillAtStep, step: {2 * steps_per_epoch + 3}}}]"])
    assert killed.returncode == -9  # SIGKILL mid-epoch 2
    assert not (tmp_path / "crash" / "result.json").exists()
    assert (tmp_path / "crash" / "checkpoints" / "latest.ckpt").is_file()
    resumed = cli(tmp_path, [f"hydra.run.dir={tmp_path / 'crash'}", *common, "resume=true"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    full, res = result(tmp_path / "full"), result(tmp_path / "crash")
    if scope == "global":
        assert res["selection"]["best_epoch"] == full["selection"]["best_epoch"]
    else:
        assert {k: v["best_epoch"] for k, v in res["selection"].items()} == \
            {k: v["best_epoch"] for k, v in full["selection"].items()}
    for s, metrics in full["test"].items():
        for m, v in metrics.items():
            assert res["test"][s][m] == pytest.approx(v, abs=1e-6), (s, m)


@pytest.mark.slow
def test_resume_refuses_a_checkpoint_from_another_config(tmp_path):
    run = tmp_path / "run"
    assert cli(tmp_path, [f"hydra.run.dir={run}", *tiny_overrides(), "logger=none",
                          "trainer.max_epochs=1"]).returncode == 0
    bad = cli(tmp_path, [f"hydra.run.dir={run}", *tiny_overrides(), "logger=none", "resume=true",
                         "backbone.embedding_dim=8"])
    assert bad.returncode == 2
    line = bad.stderr.strip().splitlines()[-1]
    assert line.startswith("error:") and "latest.ckpt" in line and "backbone.embedding_dim" in line


@pytest.mark.parametrize("override, expected", [
    ("optimizer.lr=-1", "optimizer.lr=-1, expected a positive number"),
    ("backbone.embedding_dim=0", "backbone.embedding_dim=0, expected a positive integer"),
    ("metrics=[auc,accuracy]", "unknown metric 'accuracy'; valid: auc, logloss"),
    ("scenario=[]", "the scenario list is empty"),
    ("data.batch_size=0", "data.batch_size=0, expected a positive integer"),
    ("model.mode=both", "model.mode='both', expected 'joint' or 'separate'"),
])
def test_bad_values_fail_with_one_line_and_exit_2(tmp_path, override, expected):
    tiny = [] if override.startswith("scenario=") else tiny_overrides()
    proc = cli(tmp_path, [f"hydra.run.dir={tmp_path / 'r'}", *tiny, "logger=none", override])
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert err[-1].startswith("error: ") and expected in err[-1]
    assert "Traceback" not in proc.stderr
    assert json.loads((tmp_path / "r" / "failure.json").read_text())["status"] == "failed"


@pytest.mark.parametrize("override, expected", [
    ("scenario=nosuch", "Could not find 'scenario/nosuch'"),
    ("model=nosuch", "Could not find 'model/nosuch'"),
    ("backbone.embeding_dim=8", "Key 'embeding_dim' is not in struct"),
])
def test_unknown_names_and_misspelled_keys_are_refused(tmp_path, override, expected):
    proc = cli(tmp_path, [f"hydra.run.dir={tmp_path / 'r'}", override])
    assert proc.returncode != 0 and expected in proc.stderr
    assert "Traceback" not in proc.stderr
    if "Could not find" in expected:
        assert "Available options" in proc.stderr  # the valid names are listed


def test_nan_loss_stops_naming_step_and_keeps_last_good_checkpoint(tmp_path):
    cfg = compose_cfg(tmp_path / "r", [*tiny_overrides(), "logger=none", "trainer.max_epochs=3",
                                        "+extra_callbacks=[{_target_: helpers.NaNAtStep, step: 60}]"])
    from unirec_lab.engine.module import NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss nan at epoch 1, step 60"):
        train(cfg)
    latest = tmp_path / "r" / "checkpoints" / "latest.ckpt"
    import torch

    state = torch.load(latest, weights_only=True)
    assert state["epoch"] == 0  # the last good epoch, not overwritten by the poisoned one
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())


@pytest.mark.slow
def test_sweep_with_one_failing_job_completes_the_others(tmp_path):
    proc = cli(tmp_path, ["-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", *tiny_overrides(), "logger=none",
                          "trainer.max_epochs=1", "optimizer.lr=0.002,-1,0.01"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweep = tmp_path / "sweep"
    assert (sweep / "0" / "result.json").is_file() and (sweep / "2" / "result.json").is_file()
    fail = json.loads((sweep / "1" / "failure.json").read_text())
    assert fail["status"] == "failed" and "optimizer.lr=-1" in fail["error"]
    assert not (sweep / "1" / "result.json").exists()


@pytest.mark.slow
def test_ddp_two_processes_equal_single_process_evaluation(tmp_path):
    run = tmp_path / "ddp"
    overrides = [*tiny_overrides(), "logger=csv", "trainer.max_epochs=2"]
    proc = cli(tmp_path, [f"hydra.run.dir={run}", "trainer=ddp", "trainer.devices=2", *overrides])
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = result(run)
    assert not list(run.glob("**/result.json"))[1:]  # exactly one result.json (rank 0)
    os.environ["UNIREC_CACHE_DIR"] = str(tmp_path / "cache")
    try:
        cfg = compose_cfg(tmp_path / "single", overrides)
    finally:
        os.environ.pop("UNIREC_CACHE_DIR")
    single = evaluate_checkpoint(run / r["selection"]["best_checkpoint"], cfg, metrics=("auc", "logloss", "gauc"))
    for s, vals in single.items():
        assert r["test"][s]["rows"] == vals["rows"]  # no row dropped, none counted twice
        for m in ("auc", "logloss", "gauc"):
            assert r["test"][s][m] == pytest.approx(vals[m], abs=1e-6), (s, m)
