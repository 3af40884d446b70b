"""Hostile and unlucky runs: crafted checkpoints, reused parts, same-second starts, signals, moved run dirs,
full disks, escaping names, mistyped resumes, absurd sizes, and honest train_rows / train_seconds."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from unirec_lab.engine.checkpoints import IncompatibleCheckpointError
from unirec_lab.train import train

from conftest import compose_cfg, tiny_overrides

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
BASE = [*tiny_overrides(), "logger=none", "num_threads=1"]


def env(tmp_path: Path) -> dict[str, str]:
    e = {**os.environ, "UNIREC_CACHE_DIR": str(tmp_path / "cache"), "UNIREC_ROOT": str(tmp_path / "root"),
         "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1",
         "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    e.pop("HYDRA_FULL_ERROR", None)
    return e


def cli(tmp_path: Path, args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unirec_lab.train", *args], cwd=ROOT, env=env(tmp_path),
                          capture_output=True, text=True, timeout=timeout)


def last_line(proc: subprocess.CompletedProcess) -> str:
    return proc.stderr.strip().splitlines()[-1]


def result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


def run_in_process(run_dir: Path, overrides: list[str], cache: Path) -> dict:
    os.environ["UNIREC_CACHE_DIR"] = str(cache)
    try:
        cfg = compose_cfg(run_dir, [*BASE, *overrides])
    finally:
        os.environ.pop("UNIREC_CACHE_DIR")
    train(cfg)
    return result(run_dir)


def assert_same_test(a: dict, b: dict) -> None:
    for s, metrics in a["test"].items():
        for m, v in metrics.items():
            assert b["test"][s][m] == pytest.approx(v, abs=1e-6), (s, m)


# 1. a crafted checkpoint cannot make resume delete a file outside the run dir
def test_crafted_checkpoint_paths_refused_and_victim_survives(tmp_path):
    run = tmp_path / "run"
    assert cli(tmp_path, [f"hydra.run.dir={run}", *BASE, "trainer.max_epochs=1"]).returncode == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    latest = run / "checkpoints" / "latest.ckpt"
    ckpt = torch.load(latest, weights_only=True)
    evil = str(run / "checkpoints" / ".." / ".." / "victim.txt")
    for state in ckpt["callbacks"].values():
        if "best_model_path" in state:
            state.pop("dirpath", None)
            state.update(best_model_path=evil, kth_best_model_path=evil, best_k_models={evil: 0.1})
    torch.save(ckpt, latest)
    proc = cli(tmp_path, [f"resume={run}", *BASE, "trainer.max_epochs=2"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = last_line(proc)
    assert line.startswith("error: ") and "latest.ckpt" in line and "outside the run's checkpoint dir" in line
    assert "Traceback" not in proc.stderr
    assert victim.read_text() == "precious"
    assert not (tmp_path / "root" / "outputs").exists()  # resume=<dir> writes only into <dir>


# 2. per-scenario parts are reused only when the config that wrote them is the current one
def test_per_scenario_part_from_another_config_is_refused(tmp_path):
    run = tmp_path / "run"
    first = run_in_process(run, ["model=per_scenario", "trainer.max_epochs=1"], tmp_path / "cache")
    part = json.loads((run / "per_scenario" / "ecommerce" / "part.json").read_text())
    assert part["signature"]["optimizer.lr"] == "0.002"
    with pytest.raises(IncompatibleCheckpointError, match=r"part.json: written by a different config .*"
                                                          r"optimizer.lr: saved '0.002' vs now '0.01'"):
        run_in_process(run, ["model=per_scenario", "trainer.max_epochs=1", "resume=true", "optimizer.lr=0.01"],
                       tmp_path / "cache")
    assert result(run)["test"] == first["test"]  # a refused resume supersedes nothing
    again = run_in_process(run, ["model=per_scenario", "trainer.max_epochs=1", "resume=true"], tmp_path / "cache")
    assert again["test"] == first["test"]  # same config: the finished parts are reused


# 3. two runs started in the same second get two run dirs
def test_concurrent_runs_get_their_own_dirs(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-m", "unirec_lab.train", *BASE, "trainer.max_epochs=1",
                               f"seed={s}", "experiment_name=e"], cwd=ROOT, env=env(tmp_path),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in (1, 2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1500:] for o in outs]
    dirs = sorted((tmp_path / "root" / "outputs" / "e").iterdir())
    assert len(dirs) == 2
    assert sorted(result(d)["seed"] for d in dirs) == [1, 2]


def steps_per_epoch(rows_per_epoch: int, batch: int = 256) -> int:
    return -(-rows_per_epoch // batch)


# 4 + 10. SIGTERM mid-continuation: exit 143, "interrupted", old result superseded; resume == uninterrupted run
@pytest.mark.slow
def test_sigterm_interrupts_then_resume_equals_uninterrupted(tmp_path):
    common = [*BASE, "callbacks.early_stopping.patience=10", "backbone.dropout=0.1"]
    full = tmp_path / "full"
    assert cli(tmp_path, [f"hydra.run.dir={full}", *common, "trainer.max_epochs=3"]).returncode == 0
    steps = steps_per_epoch(result(full)["train_rows"] // 3)
    run = tmp_path / "run"
    assert cli(tmp_path, [f"hydra.run.dir={run}", *common, "trainer.max_epochs=1"]).returncode == 0
    term = cli(tmp_path, [f"resume={run}", *common, "trainer.max_epochs=3",
                          f"+extra_callbacks=[{{_target_: helpers.SignalAtStep, step: {2 * steps + 2}}}]"])
    assert term.returncode == 143, term.stderr[-2000:]
    line = last_line(term)
    assert line.startswith(f"interrupted by SIGTERM during epoch 2: run {run} stopped; continue with: "
                           f"unirec-train resume={run} ")
    assert "trainer.max_epochs=3" in line and "Traceback" not in term.stderr
    fail = json.loads((run / "failure.json").read_text())
    assert fail["status"] == "interrupted" and fail["signal"] == "SIGTERM"
    assert fail["resume_command"] == line.split("continue with: ", 1)[1]
    assert not (run / "result.json").exists() and (run / "result.superseded.json").is_file()
    assert torch.load(run / "checkpoints" / "latest.ckpt", weights_only=True)["epoch"] == 1
    resumed = cli(tmp_path, [f"resume={run}", *common, "trainer.max_epochs=3"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not (run / "failure.json").exists()  # the stale failure record is gone
    r, f = result(run), result(full)
    assert r["selection"]["best_epoch"] == f["selection"]["best_epoch"]
    assert r["train_rows"] == f["train_rows"] and r["selection"]["epochs_run"] == 3
    assert_same_test(f, r)
    assert not (tmp_path / "root" / "outputs").exists()  # no stray outputs/default/<time>/


def test_sigint_exits_130_and_says_how_to_resume(tmp_path):
    run = tmp_path / "run"
    proc = cli(tmp_path, [f"hydra.run.dir={run}", *BASE, "trainer.max_epochs=1",
                          "+extra_callbacks=[{_target_: helpers.SignalAtStep, step: 2, signal: SIGINT}]"])
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert last_line(proc) == (f"interrupted by SIGINT during epoch 0: run {run} stopped before any epoch finished "
                               "(nothing to resume); start again: " + shlex.join(
                                   ["unirec-train", *BASE, "trainer.max_epochs=1",
                                    "+extra_callbacks=[{_target_: helpers.SignalAtStep, step: 2, signal: SIGINT}]"]))
    fail = json.loads((run / "failure.json").read_text())
    assert fail["status"] == "interrupted" and fail["signal"] == "SIGINT" and "restart_command" in fail
    assert not (run / "result.json").exists()


# 5. a copied run dir tests its own checkpoints; a moved one resumes
def test_copied_and_moved_run_dirs_use_their_own_checkpoints(tmp_path):
    cache = tmp_path / "cache"
    a = tmp_path / "a"
    orig = run_in_process(a, ["trainer.max_epochs=2"], cache)
    best = a / orig["selection"]["best_checkpoint"]
    b = tmp_path / "b"
    shutil.copytree(a, b)
    ckpt = torch.load(best, weights_only=True)  # spoil the original: a copy that tested it would differ
    ckpt["state_dict"] = {k: torch.zeros_like(v) if v.is_floating_point() else v
                          for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, best)
    (b / "failure.json").write_text('{"status": "failed"}')  # an earlier failed attempt's record
    copied = run_in_process(b, [f"resume={b}", "trainer.max_epochs=2"], cache)
    assert not (b / "failure.json").exists() and (b / "result.superseded.json").is_file()
    assert copied["selection"]["best_score"] == pytest.approx(orig["selection"]["best_score"])
    assert copied["selection"]["best_checkpoint"] == orig["selection"]["best_checkpoint"]
    assert_same_test(orig, copied)
    c = tmp_path / "c"
    shutil.move(b, c)
    moved = run_in_process(c, [f"resume={c}", "trainer.max_epochs=3"], cache)
    assert moved["selection"]["epochs_run"] == 3 and moved["selection"]["best_score"] is not None
    assert not b.exists() and (c / moved["selection"]["best_checkpoint"]).is_file()


# 8. disk full while checkpointing: one line naming the file, nothing partial under a final name
def test_disk_full_is_one_line_and_leaves_no_partial_checkpoint(tmp_path):
    run = tmp_path / "run"
    proc = cli(tmp_path, [f"hydra.run.dir={run}", *BASE, "trainer.max_epochs=1",
                          "+extra_callbacks=[{_target_: helpers.DiskFullOnSave}]"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = last_line(proc)
    assert line.startswith(f"error: {run / 'checkpoints'}") and ".ckpt: no space left on device" in line
    assert "Traceback" not in proc.stderr
    assert list((run / "checkpoints").iterdir()) == []
    assert json.loads((run / "failure.json").read_text())["error_type"] == "DiskFullError"


def test_disk_full_line_printed_even_when_failure_json_cannot_be_written(tmp_path, monkeypatch, capsys):
    import errno

    from unirec_lab.engine import guard
    from unirec_lab.utils.atomic import DiskFullError

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(guard, "atomic_write_json", no_space)
    cfg = compose_cfg(tmp_path / "r", BASE)

    def full(_cfg):
        raise DiskFullError(tmp_path / "r" / "checkpoints" / "latest.ckpt", OSError(errno.ENOSPC, "full"))

    with pytest.raises(SystemExit) as ei:
        guard.run_guarded(full, cfg)
    assert ei.value.code == 2
    assert capsys.readouterr().err.strip().startswith(f"error: {tmp_path / 'r' / 'checkpoints' / 'latest.ckpt'}: "
                                                      "no space left on device")
    assert not (tmp_path / "r" / "failure.json").exists()


# 9 + 10. names and resume targets are checked before Hydra creates any directory
@pytest.mark.parametrize("args, expected", [
    (["experiment_name=../../escape"], "error: experiment_name='../../escape': expected a plain name"),
    (["resume={tmp}/nosuch_run"], "error: resume={tmp}/nosuch_run: {tmp}/nosuch_run is not a directory"),
])  # more cases, without a process each: tests/unit/test_run_safety.py
def test_bad_run_dir_requests_refused_without_creating_dirs(tmp_path, args, expected):
    (tmp_path / "empty").mkdir()
    proc = cli(tmp_path, [a.format(tmp=tmp_path) for a in args])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected.format(tmp=tmp_path)), proc.stderr
    assert not (tmp_path / "root").exists() and not (tmp_path / "escape").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_resume_dir_and_another_run_dir_are_refused(tmp_path):
    from unirec_lab.utils.rundir import RunDirError

    (tmp_path / "b").mkdir()
    with pytest.raises(RunDirError, match=r"resume=.*/b and hydra.run.dir=.*/a name two different run dirs"):
        run_in_process(tmp_path / "a", [f"resume={tmp_path / 'b'}"], tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


# 11. config guards: before data prep, one line naming the key
@pytest.mark.parametrize("override, expected", [
    ("trainer.max_epochs=0", "trainer.max_epochs=0, expected a positive integer"),
    ("num_threads=-1", "num_threads=-1, expected a positive integer or null"),
    ("seed=-1", "seed=-1, expected an integer in [0, 4294967295]"),
    ("seed=4294967296", "seed=4294967296, expected an integer in [0, 4294967295]"),
    ("data.history_len=-1", "data.history_len=-1, expected an integer >= 0"),
    ("backbone.embedding_dim=-3", "backbone.embedding_dim=-3, expected a positive integer"),
    ("full_ranking.candidates=0", "full_ranking.candidates=0, expected a positive integer or null"),
])
def test_config_guards_name_the_key_before_data_prep(tmp_path, capsys, override, expected):
    from unirec_lab.engine.guard import run_guarded

    cfg = compose_cfg(tmp_path / "r", [*BASE, override])
    with pytest.raises(SystemExit) as ei:
        run_guarded(train, cfg)
    assert ei.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {expected}"
    assert not (tmp_path / "cache").exists()  # refused before any data was prepared


@pytest.mark.parametrize("override, key", [("backbone.embedding_dim=100000000", "backbone.embedding_dim"),
                                           ("data.history_len=100000000", "data.history_len")])
def test_sizes_that_cannot_fit_are_refused_before_allocating(tmp_path, override, key):
    from unirec_lab.utils.memory import MemoryBudgetError

    with pytest.raises(MemoryBudgetError, match=rf"^{key}=100000000: .* would take ~[0-9.]+ GiB, more than the "
                                                rf"[0-9.]+ GiB of memory available; lower {key}$"):
        run_in_process(tmp_path / "r", [override], tmp_path / "cache")


# issue #10: every trained row and second is counted, the same way in every selection mode
@pytest.mark.parametrize("mode", [[], ["selection.scope=per_scenario"], ["model=per_scenario"]])
def test_train_rows_count_every_epoch_in_every_selection_mode(tmp_path, mode):
    # sabotage from epoch 1 on: the best epoch is 0, so state restored from the best checkpoint would show 1 epoch
    r = run_in_process(tmp_path / "r", [*mode, "trainer.max_epochs=3", "callbacks.early_stopping.patience=10",
                                        "+extra_callbacks=[{_target_: helpers.SabotageAfterEpoch, epoch: 1}]"],
                       tmp_path / "cache")
    train_rows = {s: d["rows_per_split"]["train"] for s, d in r["data"].items()}
    sel = r["selection"]
    if "monitor" in sel:
        assert sel["epochs_run"] == 3 and sel["best_epoch"] == 0
        assert r["train_rows"] == 3 * sum(train_rows.values())
    else:
        assert {v["epochs_run"] for v in sel.values()} == {3}
        assert r["train_rows"] == sum(3 * n for n in train_rows.values())
    assert 0 < r["train_seconds"] <= r["wall_seconds"]
