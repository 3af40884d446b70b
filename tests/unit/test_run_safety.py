"""Checkpoint paths are never trusted, writes are atomic, run dirs are unique and names safe (no training)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
import torch

from unirec_lab.engine.checkpoint_io import RunCheckpointIO, UnsafeCheckpointError, to_relative, to_run_dir
from unirec_lab.utils.atomic import DiskFullError, atomic_write_with
from unirec_lab.utils.memory import MemoryBudgetError, ensure_fits
from unirec_lab.utils.rundir import RunDirError, check_experiment_name

KEY = "ModelCheckpoint{'monitor': 'val/mean/auc'}"


def ckpt_with(dirpath, best, k_models=None) -> dict:
    state = {"monitor": "val/mean/auc", "best_model_score": torch.tensor(0.7), "best_model_path": best,
             "current_score": None, "best_k_models": k_models if k_models is not None else {best: 0.7},
             "kth_best_model_path": best, "kth_value": 0.7, "last_model_path": ""}
    if dirpath is not None:
        state["dirpath"] = dirpath
    return {"state_dict": {}, "callbacks": {KEY: state}}


@pytest.mark.parametrize("dirpath, best", [
    (None, "{ck}/../../../victim.txt"),          # the reported attack: no dirpath, lexically "inside"
    ("{ck}", "{ck}/../../victim.ckpt"),          # escapes its own saved dirpath
    (".", "../victim.ckpt"),                     # relative escape
    (".", "sub/x.ckpt"),                         # not directly in the checkpoint dir
    (".", "victim.txt"),                         # not a checkpoint file
    (".", "/etc/passwd"),                        # absolute with a relative dirpath
])
def test_escaping_callback_paths_are_refused(tmp_path, dirpath, best):
    ck = tmp_path / "run" / "checkpoints"
    ck.mkdir(parents=True)
    fmt = {"ck": str(ck)}
    ckpt = ckpt_with(dirpath.format(**fmt) if dirpath else None, best.format(**fmt))
    with pytest.raises(UnsafeCheckpointError, match="outside the run's checkpoint dir"):
        to_run_dir(ckpt, ck / "latest.ckpt")


def test_symlink_leading_out_is_refused(tmp_path):
    ck = tmp_path / "run" / "checkpoints"
    ck.mkdir(parents=True)
    (tmp_path / "victim.ckpt").write_text("x")
    os.symlink(tmp_path / "victim.ckpt", ck / "best-epoch000.ckpt")
    with pytest.raises(UnsafeCheckpointError):
        to_run_dir(ckpt_with(".", "best-epoch000.ckpt"), ck / "latest.ckpt")


def test_paths_saved_relative_and_rebuilt_in_the_loading_dir(tmp_path):
    old = tmp_path / "old" / "checkpoints"
    new = tmp_path / "moved" / "checkpoints"
    saved = to_relative(ckpt_with(str(old), str(old / "best-epoch003.ckpt")), old)
    st = saved["callbacks"][KEY]
    assert st["best_model_path"] == "best-epoch003.ckpt" and st["dirpath"] == "."
    assert list(st["best_k_models"]) == ["best-epoch003.ckpt"]
    new.mkdir(parents=True)
    st = to_run_dir(saved, new / "latest.ckpt")["callbacks"][KEY]
    assert st["best_model_path"] == str(new.resolve() / "best-epoch003.ckpt")
    assert st["dirpath"] == str(new.resolve()) and list(st["best_k_models"]) == [st["best_model_path"]]
    # an absolute path written by an older version, under its own dirpath, is rebased too
    legacy = to_run_dir(ckpt_with(str(old), str(old / "best-epoch001.ckpt")), new / "latest.ckpt")
    assert legacy["callbacks"][KEY]["best_model_path"] == str(new.resolve() / "best-epoch001.ckpt")


def test_checkpoint_io_round_trip_and_refuses_foreign_deletes(tmp_path):
    io = RunCheckpointIO()
    ck = tmp_path / "checkpoints"
    io.save_checkpoint(ckpt_with(str(ck), str(ck / "best-epoch000.ckpt")), ck / "latest.ckpt")
    assert [p.name for p in ck.iterdir()] == ["latest.ckpt"]  # no temp file left
    back = io.load_checkpoint(ck / "latest.ckpt")
    assert back["callbacks"][KEY]["best_model_path"] == str(ck.resolve() / "best-epoch000.ckpt")
    victim = tmp_path / "victim.ckpt"
    victim.write_text("keep me")
    with pytest.raises(UnsafeCheckpointError, match="refusing to delete"):
        io.remove_checkpoint(victim)
    assert victim.read_text() == "keep me"
    io.remove_checkpoint(ck / "latest.ckpt")
    assert not (ck / "latest.ckpt").exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_disk_full_leaves_old_content_and_no_partial_file(tmp_path, code):
    target = tmp_path / "best-epoch000.ckpt"
    target.write_bytes(b"old")

    def write(f):
        f.write(b"partial")
        raise OSError(code, os.strerror(code))

    with pytest.raises(DiskFullError) as ei:
        atomic_write_with(target, write)
    assert str(target) in str(ei.value) and ("no space left" in str(ei.value) or "quota" in str(ei.value))
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == [target.name]


@pytest.mark.parametrize("name", ["../../escape", "a/b", "..", ".hidden", "", "-x", "a\\b"])
def test_unsafe_experiment_names_are_refused(name):
    with pytest.raises(RunDirError, match="experiment_name="):
        check_experiment_name(name)


def test_plain_experiment_names_pass():
    assert check_experiment_name("main_real.v2") == "main_real.v2"


def test_each_process_gets_its_own_run_dir_suffix():
    code = ("from unirec_lab.utils.rundir import resolve_run_dir; "
            "print(resolve_run_dir(False, '/o', 'e', '2026-01-01_00-00-00'))")
    dirs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
            for _ in range(2)}
    assert len(dirs) == 2 and all(d.startswith("/o/e/2026-01-01_00-00-00_") for d in dirs)


def test_memory_budget_names_the_key():
    ensure_fits(10, "data.history_len", 20, "histories", available=100)
    with pytest.raises(MemoryBudgetError, match=r"data.history_len=20: histories would take ~.* GiB, more than"):
        ensure_fits(2 * 1024 ** 3, "data.history_len", 20, "histories", available=1024 ** 3)


@pytest.mark.parametrize("resume, name, expected", [
    ("{tmp}/nope", "e", "error: resume={tmp}/nope: {tmp}/nope is not a directory"),
    ("{tmp}/empty", "e", "error: resume={tmp}/empty: {tmp}/empty holds no resumable run (no checkpoints/latest.ckpt "
                         "or per_scenario/*/part.json); start it again without resume"),
    ("{tmp}/finished", "e", "error: resume={tmp}/finished: {tmp}/finished holds no resumable run"),
    (True, "e", "error: resume=true: say which run to continue, resume=<run dir> (or resume=true with "
                "hydra.run.dir=<run dir>)"),
    (False, "a/../../b", "error: experiment_name='a/../../b': expected a plain name"),
])
def test_resolver_refusal_is_one_line_exit_2(tmp_path, capsys, resume, name, expected):
    from unirec_lab.utils.rundir import resolve_run_dir

    (tmp_path / "empty").mkdir()
    (tmp_path / "finished").mkdir()
    (tmp_path / "finished" / "result.json").write_text("{}")  # a result alone has nothing to continue from
    resume = resume.format(tmp=tmp_path) if isinstance(resume, str) else resume
    with pytest.raises(SystemExit) as ei:
        resolve_run_dir(resume, str(tmp_path / "o"), name, "t")
    assert ei.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(expected.format(tmp=tmp_path))
    assert not (tmp_path / "o").exists()


def test_resolver_accepts_a_resumable_dir(tmp_path):
    from unirec_lab.utils.rundir import resolve_run_dir

    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "latest.ckpt").write_bytes(b"x")
    assert resolve_run_dir(str(tmp_path / "run"), "/o", "e", "t") == str(tmp_path / "run")
