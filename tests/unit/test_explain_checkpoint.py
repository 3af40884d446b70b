"""unirec-explain on a run whose checkpoint is unreadable: one line naming the file, exit status 2."""

from __future__ import annotations

import json

import pytest
import torch

from unirec_lab.cli.explain import main


def _run(tmp_path, ckpt_bytes: bytes | None = None, obj=None):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    record = {"schema_version": 1, "status": "completed", "model": "unified", "mode": "joint", "seed": 1,
              "scenarios": ["news"], "config": {"seed": 1}, "test": {"news": {"auc": 0.6}},
              "selection": {"monitor": "val/mean/auc", "best_checkpoint": "checkpoints/best.ckpt"}}
    (run / "result.json").write_text(json.dumps(record))
    ckpt = run / "checkpoints" / "best.ckpt"
    if obj is not None:
        torch.save(obj, ckpt)
    if ckpt_bytes is not None:
        ckpt.write_bytes(ckpt_bytes)
    return run, ckpt


def _good_checkpoint_bytes(tmp_path) -> bytes:
    f = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"model.w": torch.zeros(64, 64)}, "epoch": 1}, f)
    return f.read_bytes()


@pytest.mark.parametrize("kind", ["truncated", "garbage", "flipped", "not_a_checkpoint"])
def test_corrupt_checkpoint_is_one_line_exit_2(tmp_path, capsys, kind):
    good = _good_checkpoint_bytes(tmp_path)
    if kind == "truncated":
        run, ckpt = _run(tmp_path, good[: len(good) // 3])
    elif kind == "garbage":
        run, ckpt = _run(tmp_path, b"\x00\x01 this is not a checkpoint")
    elif kind == "flipped":
        data = bytearray(good)
        data[:64] = bytes(64)  # the zip's local header: unreadable
        run, ckpt = _run(tmp_path, bytes(data))
    else:
        run, ckpt = _run(tmp_path, obj=[1, 2, 3])
    assert main([str(run), "--scenario", "news"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {ckpt}: ")
    expected = "not a Lightning checkpoint (no state_dict)" if kind == "not_a_checkpoint" else \
        "cannot be read as a checkpoint ("
    assert expected in err


def test_invalid_result_json_is_one_line_exit_2(tmp_path, capsys):
    run, _ = _run(tmp_path, b"")
    (run / "result.json").write_text("[]")
    assert main([str(run), "--scenario", "news"]) == 2
    assert capsys.readouterr().err == f"error: {run / 'result.json'}: expected a JSON object, got a list\n"
