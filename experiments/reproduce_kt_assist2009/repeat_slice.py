"""Test AUC of a finished KT run split by whether a response repeats the previous one's problem.

Why: AKT's files list a response to a problem with k skills k times in a row (same problem, same answer), so the
copies after the first are predictable from the entry just before them. This script shows how much of a run's
test AUC comes from those copies and how it does on the responses that are not copies.

    python experiments/reproduce_kt_assist2009/repeat_slice.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from unirec_lab.cli.explain import ExplainError, load_run
from unirec_lab.evaluation.metrics import auc


def test_logits(run_dir: Path) -> dict[str, np.ndarray]:
    """Labels, logits and the repeat flag of every test row of the run's education scenario (tested weights)."""
    _, dm, model = load_run(run_dir, "education")
    labels, logits, repeat = [], [], []
    with torch.no_grad():
        for batch in dm.test_dataloader():
            logits.append(model(batch).reshape(-1).numpy())
            labels.append(batch["label"].numpy())
            repeat.append((batch["history"][:, -1] == batch["item"]).numpy())  # most recent entry = same problem
    return {"label": np.concatenate(labels), "logit": np.concatenate(logits), "repeat": np.concatenate(repeat)}


def report(run_dir: Path) -> str:
    d = test_logits(run_dir)
    parts = [("all", np.ones_like(d["repeat"])), ("repeat of the previous problem", d["repeat"]),
             ("not a repeat", ~d["repeat"])]
    lines = [f"{run_dir}"]
    for name, m in parts:
        lines.append(f"  {name:32s} rows {int(m.sum()):6d}  AUC {auc(d['label'][m], d['logit'][m]):.4f}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    for arg in argv:
        try:
            print(report(Path(arg)))
        except ExplainError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
