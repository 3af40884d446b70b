"""A gloo rank for the DDP gather test, in its own light module: spawned children import only this."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from unirec_lab.evaluation.metrics import ScenarioEvaluator


def gather_on_rank(rank: int, world: int, init_file: str, rows_per_rank: list[list[int]], out_dir: str) -> None:
    """One gloo rank of a CPU process group: feeds its share of evaluation rows (lengths may differ, a row may
    be repeated on two ranks as DistributedSampler padding does) and saves what ``gathered()`` returns."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        ev = ScenarioEvaluator(["a", "b"], ["auc", "gauc"])
        for chunk in (rows_per_rank[rank][:2], rows_per_rank[rank][2:]):
            if chunk:
                ev.update(*eval_rows(torch.tensor(chunk)))
        np.savez(f"{out_dir}/rank{rank}.npz", **ev.gathered())
    finally:
        dist.destroy_process_group()


def eval_rows(row: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A deterministic evaluation batch and its logits for global row ids ``row`` (the same on every rank)."""
    batch = {"row": row, "scenario": (row >= 4).long(), "label": (row % 2).float(), "group": row // 3}
    return batch, torch.sin(row.double() * 1.7).float()
