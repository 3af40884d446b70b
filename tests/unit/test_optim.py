"""LazyAdam equals Adam/AdamW on dense parameters and on embedding rows a batch touches; others stay put."""

from __future__ import annotations

import torch
from torch import nn

from unirec_lab.engine.optim import LazyAdam


def _model(sparse: bool) -> nn.Module:
    torch.manual_seed(0)
    return nn.ModuleDict({"emb": nn.Embedding(50, 4, sparse=sparse), "lin": nn.Linear(4, 1)})


def _run(model: nn.Module, opt: torch.optim.Optimizer, batches) -> None:
    for ids in batches:
        opt.zero_grad()
        model["lin"](model["emb"](ids)).pow(2).sum().backward()
        opt.step()


def test_matches_torch_adamw_dense_and_sparse():
    batches = [torch.tensor([1, 2, 3, 3]), torch.tensor([1, 2, 3]), torch.tensor([3, 2, 1, 1])]
    for wd, ref_cls in ((0.0, torch.optim.Adam), (0.01, torch.optim.AdamW)):
        ref = _model(sparse=False)
        _run(ref, ref_cls(ref.parameters(), lr=0.01, weight_decay=wd), batches)
        for sparse in (False, True):
            m = _model(sparse=sparse)
            _run(m, LazyAdam(m.parameters(), lr=0.01, weight_decay=wd), batches)
            assert torch.allclose(m["lin"].weight, ref["lin"].weight, atol=1e-6)
            # rows 1-3 were touched at every step: same trajectory as dense Adam
            assert torch.allclose(m["emb"].weight[1:4], ref["emb"].weight[1:4], atol=1e-6)


def test_sparse_untouched_rows_and_moments_stay():
    m = _model(sparse=True)
    before = m["emb"].weight.detach().clone()
    opt = LazyAdam(m.parameters(), lr=0.1, weight_decay=0.1)
    _run(m, opt, [torch.tensor([5, 6]), torch.tensor([6])])
    w = m["emb"].weight.detach()
    changed = (w != before).any(1)
    assert changed.nonzero().flatten().tolist() == [5, 6]
    assert opt.state[m["emb"].weight]["exp_avg"][7].abs().sum() == 0


def test_state_dict_round_trip_continues_identically():
    batches = [torch.tensor([1, 2]), torch.tensor([2, 3]), torch.tensor([3, 4])]
    a = _model(sparse=True)
    oa = LazyAdam(a.parameters(), lr=0.05)
    _run(a, oa, batches)
    b = _model(sparse=True)
    ob = LazyAdam(b.parameters(), lr=0.05)
    _run(b, ob, batches[:2])
    c = _model(sparse=True)
    c.load_state_dict(b.state_dict())
    oc = LazyAdam(c.parameters(), lr=0.05)
    oc.load_state_dict(ob.state_dict())
    _run(c, oc, batches[2:])
    assert torch.equal(a["emb"].weight, c["emb"].weight) and torch.equal(a["lin"].weight, c["lin"].weight)
