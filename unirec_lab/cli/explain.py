"""Explain a trained run's scores for one user: prior, profile, history and item attributions per candidate.

    unirec-explain outputs/2026-11-28/10-00-00 --scenario news                 # a seeded user with a positive
    unirec-explain RUN_DIR --scenario ecommerce --user 17 --top 5 --json why.json

Reads the run's ``result.json`` (its resolved config) and the checkpoint its selection tested for that
scenario (the global best, the scenario's own best under per-scenario selection, or the scenario's separate
model), scores the user's rows of ``--split`` and prints the ``--top`` highest with integrated-gradients
attributions (``unirec_lab/explain.py``): ``logit = prior + profile + history + item (+ residual)``, and the
history items that moved the score most. Ids are the scenario's own (bundle) user and item ids.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from unirec_lab.engine.build import build
from unirec_lab.engine.checkpoints import read_checkpoint
from unirec_lab.engine.selection import tested_checkpoint
from unirec_lab.explain import integrated_gradients
from unirec_lab.results.record import RESULT_FILE, RunRecord
from unirec_lab.results.tables import markdown_table
from unirec_lab.utils.atomic import atomic_write_json


class ExplainError(ValueError):
    """The run or the request cannot be explained; the message says which file / value and why."""


def checkpoint_for(run_dir: Path, record: RunRecord, scenario: str) -> tuple[Path, list[str]]:
    """(checkpoint file, scenarios its model was trained on) that the run tested ``scenario`` with."""
    ckpt, keys = tested_checkpoint(record, run_dir, scenario)
    if ckpt is None:
        raise ExplainError(f"{run_dir / RESULT_FILE}: no selected checkpoint recorded for {scenario!r}")
    return ckpt, keys


def load_run(run_dir: Path, scenario: str) -> tuple[Any, Any, torch.nn.Module]:
    """(config, set-up datamodule, model with the tested weights) of a finished run."""
    path = run_dir / RESULT_FILE
    if not path.is_file():
        raise ExplainError(f"{path}: not found (is {run_dir} a finished unirec-train run dir?)")
    record = RunRecord.read(path)
    if scenario not in record.scenarios:
        raise ExplainError(f"--scenario {scenario!r}: the run covers {record.scenarios}")
    if not isinstance(record.config, dict):
        raise ExplainError(f"{path}: has no resolved config to rebuild the model from")
    ckpt, keys = checkpoint_for(run_dir, record, scenario)
    if not ckpt.is_file():
        raise ExplainError(f"{ckpt}: checkpoint missing (deleted after the run?)")
    state = read_checkpoint(ckpt)["state_dict"]  # before any data is prepared: a bad file fails in a second
    cfg = OmegaConf.create(record.config)
    dm, model = build(cfg, keys)
    try:
        model.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    except RuntimeError as e:
        raise ExplainError(f"{ckpt}: does not fit the run's model ({str(e).strip().splitlines()[-1].strip()[:200]})"
                           ) from None
    return cfg, dm, model.eval()


def user_rows(dm: Any, scenario: str, split: str, user: int | None, seed: int = 0) -> tuple[dict[str, torch.Tensor], int]:
    """The rows of one user (a scenario-local id; default: a seeded user with a positive) in ``split``."""
    data = dm.splits[split]
    s_idx = dm.scenario_names.index(scenario)
    in_s = data["scenario"] == s_idx
    offset = dm.space.user_offset[scenario] + 1
    if user is None:
        cands = torch.unique(data["user"][in_s & (data["label"] > 0.5)])
        if not len(cands):
            raise ExplainError(f"scenario {scenario!r} has no positive {split} rows to explain")
        user = int(cands[np.random.default_rng(seed).integers(len(cands))]) - offset
    m = in_s & (data["user"] == user + offset)
    if not m.any():
        raise ExplainError(f"--user {user}: no {split} rows in scenario {scenario!r}")
    return {k: v[m] for k, v in data.items()}, user


def explain_user(dm: Any, model: torch.nn.Module, scenario: str, split: str = "test", user: int | None = None,
                 top: int = 10, steps: int = 64, seed: int = 0) -> dict[str, Any]:
    rows, user = user_rows(dm, scenario, split, user, seed)
    att = integrated_gradients(model, rows, steps)
    item_off = dm.space.item_offset[scenario] + 1
    order = torch.argsort(att["logit"], descending=True)[:top]
    out = []
    for r in order.tolist():
        hist, contrib = rows["history"][r], att["history"][r]
        real = torch.nonzero(hist > 0, as_tuple=True)[0]
        ranked = real[torch.argsort(contrib[real].abs(), descending=True)][:3]
        out.append({"item": int(rows["item"][r]) - item_off, "label": float(rows["label"][r]),
                    "logit": float(att["logit"][r]), "prior": float(att["prior"][r]),
                    "profile": float(att["profile"][r]), "history": float(contrib.sum()),
                    "item_attr": float(att["item"][r]), "residual": float(att["residual"][r]),
                    "top_history": [{"item": int(hist[t]) - item_off, "position": int(t) - len(hist),
                                     "attribution": float(contrib[t])} for t in ranked.tolist()]})
    return {"scenario": scenario, "split": split, "user": user, "rows": int(len(rows["label"])),
            "positives": int((rows["label"] > 0.5).sum()), "steps": steps, "candidates": out}


def render(expl: dict[str, Any]) -> str:
    head = ["rank", "item", "label", "logit", "prior", "profile", "history", "item attr", "residual",
            "top history items (position: attribution)"]
    body = [[i + 1, c["item"], int(c["label"]), c["logit"], c["prior"], c["profile"], c["history"], c["item_attr"],
             c["residual"], ", ".join(f"{h['item']} ({h['position']}: {h['attribution']:+.3f})" for h in c["top_history"])]
            for i, c in enumerate(expl["candidates"])]
    return (f"scenario {expl['scenario']}, user {expl['user']}: top {len(body)} of {expl['rows']} {expl['split']} rows "
            f"({expl['positives']} positive); logit = prior + profile + history + item attr + residual "
            f"(integrated gradients, {expl['steps']} steps; position -1 = most recent)\n"
            + markdown_table(head, body))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="unirec-explain", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--user", type=int, default=None, help="scenario-local user id (default: a seeded user)")
    ap.add_argument("--split", default="test", choices=["train", "val", "test"])
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--steps", type=int, default=64, help="integrated-gradients steps")
    ap.add_argument("--seed", type=int, default=0, help="picks the default user")
    ap.add_argument("--json", type=Path, default=None, help="also write the explanation here")
    args = ap.parse_args(argv)
    try:
        _, dm, model = load_run(args.run_dir, args.scenario)
        expl = explain_user(dm, model, args.scenario, args.split, args.user, args.top, args.steps, args.seed)
    except (ExplainError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(render(expl))
    if args.json:
        atomic_write_json(args.json, expl)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
