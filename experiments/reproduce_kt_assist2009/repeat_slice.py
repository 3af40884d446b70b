"""Test AUC of a finished KT run on AKT's multi-skill copies and on the other responses.

Why: AKT's files list a response to a problem with k skills k times in a row (same problem, same answer, one
skill each), so the copies after the first are predictable from the entry just before them. This shows how much
of a run's test AUC comes from those copies and how it does on the rest. The copies are found in the raw test
file (same student and problem as the previous row, another skill, the same answer), so the split holds for any
item choice (problem or skill).

    python experiments/reproduce_kt_assist2009/repeat_slice.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from unirec_lab.cli.explain import ExplainError, load_run
from unirec_lab.data.scenarios.knowledge_tracing import parse_kt_file
from unirec_lab.evaluation.metrics import auc


def copy_flags(test_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """(is a multi-skill copy, label) of every response of ``test_file``, ordered as the bundle's rows: by student
    id, then answer order."""
    df, _ = parse_kt_file(test_file, ("problem", "skill", "correct"), "user")
    prev = df.shift(1)
    df["copy"] = ((df["student"] == prev["student"]) & (df["problem"] == prev["problem"])
                  & (df["skill"] != prev["skill"]) & (df["correct"] == prev["correct"]))
    df = df.sort_values("student", kind="stable")
    return df["copy"].to_numpy(), df["correct"].to_numpy(np.float32)


def test_logits(run_dir: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """(raw test file, labels, logits) of the run's education test rows (tested weights), in data order."""
    cfg, dm, model = load_run(run_dir, "education")
    src = cfg.scenarios.education.source
    test_file = Path(src.raw_dir) / "education" / "assist2009_pid" / "assist2009_pid_test1.csv"
    labels, logits = [], []
    with torch.no_grad():
        for batch in dm.test_dataloader():
            logits.append(model(batch).reshape(-1).numpy())
            labels.append(batch["label"].numpy())
    return test_file, np.concatenate(labels), np.concatenate(logits)


def report(run_dir: Path) -> str:
    test_file, label, logit = test_logits(run_dir)
    copy, raw_label = copy_flags(test_file)
    if len(raw_label) != len(label) or not np.array_equal(raw_label, label):
        raise ExplainError(f"{run_dir}: its {len(label)} test rows are not {test_file}'s {len(raw_label)} responses "
                           "in the bundle's order (expected split: fold and merge_multi_skill_rows: false)")
    lines = [f"{run_dir}"]
    for name, m in [("all", np.ones_like(copy)), ("multi-skill copy", copy), ("not a copy", ~copy)]:
        lines.append(f"  {name:18s} rows {int(m.sum()):6d}  AUC {auc(label[m], logit[m]):.4f}")
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
