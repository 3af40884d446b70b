"""AdaptDHM under DDP: two processes routing different rows keep identical cluster centres, equal to one
process updating them from the union of the rows (the update sums over the global batch)."""

from __future__ import annotations

import functools
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from unirec_lab.models.heads.adaptdhm import AdaptDHM

D = 10


def _head() -> AdaptDHM:
    torch.manual_seed(0)
    return AdaptDHM(SimpleNamespace(num_scenarios=2), D, hidden_dims=[8], num_clusters=3, beta=0.6,
                    scenario_embedding_dim=2, feature_dims={})


def _rows() -> torch.Tensor:
    return torch.randn(24, D + 2, generator=torch.Generator().manual_seed(7))


def _worker(rank: int, init: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        head = _head().train()
        head.route(_rows()[rank * 12:(rank + 1) * 12])  # each replica sees its half of the global batch
        torch.save(head.centres, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_adaptdhm_centres_stay_in_sync_across_ddp_replicas(tmp_path: Path) -> None:
    out = str(tmp_path / "centres")
    mp.start_processes(functools.partial(_worker), args=(f"file://{tmp_path / 'rendezvous'}", out), nprocs=2,
                       start_method="spawn")
    c0, c1 = torch.load(f"{out}.0"), torch.load(f"{out}.1")
    single = _head().train()
    single.route(_rows())
    assert torch.equal(c0, c1)
    torch.testing.assert_close(c0, single.centres)
    assert not torch.allclose(c0, _head().centres)  # the centres did move
