"""Sequence objectives: each loss equals a hand computation on a tiny batch, and each trains through the model."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from unirec_lab.engine.module import RecLitModule
from unirec_lab.engine.optim import LazyAdam
from unirec_lab.models.backbones.encoders import CausalSelfAttention, MeanPooling, RecurrentEncoder
from unirec_lab.models.backbones.shared import SharedBackbone
from unirec_lab.models.builders import build_unified
from unirec_lab.models.heads.mlp import MLPTowers
from unirec_lab.models.objectives import (
    NextItemObjective,
    NextResponseObjective,
    next_item_bce,
    next_response_bce,
    sampled_softmax_logq,
)


def sp(x: float) -> float:
    return math.log1p(math.exp(x))


def test_next_item_bce_equals_hand_computation():
    states = torch.tensor([[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    pos = torch.tensor([[2.0, 0.0], [0.0, 1.0], [9.0, 9.0]])
    neg = torch.tensor([[0.0, 1.0], [1.0, 1.0], [9.0, 9.0]])
    valid = torch.tensor([True, True, False])  # the third position must not count
    # <h,pos> = 2, 2; <h,neg> = 0, 2
    want = ((sp(-2) + sp(0)) + (sp(-2) + sp(2))) / 2
    assert next_item_bce(states, pos, neg, valid).item() == pytest.approx(want, rel=1e-6)


def test_sampled_softmax_logq_equals_hand_computation():
    states = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pos = torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    negs = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    pos_logq = torch.log(torch.tensor([0.5, 0.25]))
    neg_logq = torch.log(torch.tensor([0.25, 0.5]))
    accidental = torch.tensor([[False, False], [False, True]])  # position 2's positive drawn as negative 2
    valid = torch.tensor([True, True])
    # position 1: logits pos 1 - log .5, negs 2 - log .25, 0 - log .5
    l1 = math.log(math.exp(1 + math.log(2)) + math.exp(2 + math.log(4)) + math.exp(math.log(2))) - (1 + math.log(2))
    # position 2: pos 0 - log .25, neg1 0 - log .25, neg2 dropped
    l2 = math.log(math.exp(math.log(4)) + math.exp(math.log(4))) - math.log(4)
    got = sampled_softmax_logq(states, pos, negs, pos_logq, neg_logq, valid, accidental)
    assert got.item() == pytest.approx((l1 + l2) / 2, rel=1e-6)
    # without the correction the same positions give a different value (the logQ terms matter)
    plain = sampled_softmax_logq(states, pos, negs, torch.zeros(2), torch.zeros(2), valid, accidental)
    assert abs(plain.item() - got.item()) > 1e-3


def test_next_response_bce_equals_hand_computation():
    logits = torch.tensor([0.0, 2.0, -1.0])
    labels = torch.tensor([True, False, True])
    valid = torch.tensor([True, True, False])
    assert next_response_bce(logits, labels, valid).item() == pytest.approx((math.log(2) + sp(2)) / 2, rel=1e-6)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _model(dm, encoder="lstm"):
    enc = {"lstm": functools.partial(RecurrentEncoder, hidden_dim=16),
           "sasrec": functools.partial(CausalSelfAttention, max_len=8, dropout=0.0),
           "mean": MeanPooling}[encoder]
    torch.manual_seed(0)
    return build_unified(dm.space, functools.partial(SharedBackbone, history_encoder=enc, embedding_dim=16,
                                                     trunk_dims=[16], feedback_embedding=True),
                         functools.partial(MLPTowers, hidden_dims=[8]))


def _batch(dm, n=64):
    tr = dm.splits["train"]
    idx = torch.nonzero(tr["history"][:, -3:].gt(0).all(1))[:n, 0]
    return {k: v[idx] for k, v in tr.items()}


@pytest.mark.parametrize("encoder", ["lstm", "sasrec"])
@pytest.mark.parametrize("make", [
    lambda s: NextItemObjective(s), lambda s: NextItemObjective(s, loss="sampled_softmax", num_negatives=20),
    lambda s: NextResponseObjective(s, weight=0.5)])
def test_objectives_train_the_model(tiny_dm, encoder, make):
    model = _model(tiny_dm, encoder)
    obj = make(tiny_dm.space)
    batch = _batch(tiny_dm)
    module = RecLitModule(model, functools.partial(LazyAdam, lr=1e-2), tiny_dm.scenario_names, objectives=[obj])
    opt = module.configure_optimizers()
    torch.manual_seed(1)
    first = obj(model, batch).item()
    assert first > 0
    for _ in range(30):
        opt.zero_grad()
        module.loss(batch)[0].backward()
        opt.step()
    torch.manual_seed(1)
    assert obj(model, batch).item() < first


def test_objective_scenarios_restrict_the_rows(tiny_dm):
    model = _model(tiny_dm)
    batch = _batch(tiny_dm)
    only = NextResponseObjective(tiny_dm.space, scenarios=["education"])
    edu = batch["scenario"] == tiny_dm.scenario_names.index("education")
    want = NextResponseObjective(tiny_dm.space)(model, {k: v[edu] for k, v in batch.items()})
    assert only(model, batch).item() == pytest.approx(want.item(), rel=1e-6)
    none = {k: v[~edu] for k, v in batch.items()}
    assert only(model, none).item() == 0.0


def test_objective_errors_are_one_line(tiny_dm):
    with pytest.raises(ValueError, match=r"next_item loss='softmax', expected 'bce' or 'sampled_softmax'"):
        NextItemObjective(tiny_dm.space, loss="softmax")
    with pytest.raises(ValueError, match=r"next_response scenarios=\['shop'\]: not among the selected"):
        NextResponseObjective(tiny_dm.space, scenarios=["shop"])
    with pytest.raises(ValueError, match="history encoder MeanPooling has no per-position states"):
        NextResponseObjective(tiny_dm.space).check(_model(tiny_dm, "mean"))  # at build time (build_module)
    with pytest.raises(ValueError, match="history encoder MeanPooling has no per-position states"):
        NextResponseObjective(tiny_dm.space)(_model(tiny_dm, "mean"), _batch(tiny_dm))
    NextResponseObjective(tiny_dm.space).check(_model(tiny_dm, "lstm"))


def test_recurrent_encoder_ignores_left_padding():
    torch.manual_seed(0)
    enc = RecurrentEncoder(4, hidden_dim=6).eval()
    x = torch.randn(1, 3, 4)
    short = enc.sequence_outputs(x, torch.ones(1, 3, dtype=torch.bool))
    padded = torch.cat([torch.randn(1, 2, 4), x], 1)  # padding content must not matter
    mask = torch.tensor([[False, False, True, True, True]])
    long = enc.sequence_outputs(padded, mask)
    torch.testing.assert_close(long[:, 2:], short)
    assert long[:, :2].abs().sum() == 0
    torch.testing.assert_close(enc(padded, mask, None), short[:, -1])


def test_build_objectives_from_config(tiny_dm, cfg_factory):
    import dataclasses

    from unirec_lab.engine.build import build_objectives
    from unirec_lab.engine.config import ConfigError

    cfg = cfg_factory(["objectives=[next_item,next_response]", "objectives.next_response.scenarios=[education]"])
    objs = build_objectives(cfg, tiny_dm.space)
    assert [type(o).__name__ for o in objs] == ["NextItemObjective", "NextResponseObjective"]
    assert objs[1].scenario_mask.tolist() == [s == "education" for s in tiny_dm.space.scenarios]
    # model.mode=separate: the news model gets no education-only objective
    news_only = dataclasses.replace(tiny_dm.space, scenarios=["news"])
    assert [type(o).__name__ for o in build_objectives(cfg, news_only)] == ["NextItemObjective"]
    bad = cfg_factory(["objectives=next_response", "objectives.next_response.scenarios=[educaton]"])
    with pytest.raises(ConfigError, match=r"objectives.next_response.scenarios=\['educaton'\]: not among the selected"):
        build_objectives(bad, tiny_dm.space)


@pytest.mark.parametrize("encoder", ["lstm", "sasrec"])
def test_shared_encoder_pass_gives_the_same_loss_and_gradients(tiny_dm, encoder):
    """A training step with objectives runs the history encoder once (RecLitModule.loss): its loss and gradients
    equal the pointwise loss and every objective computed with their own encoder passes (dropout 0)."""
    model = _model(tiny_dm, encoder)
    model.train()
    batch = _batch(tiny_dm)
    objs = [NextResponseObjective(tiny_dm.space, scenarios=["education"]), NextItemObjective(tiny_dm.space)]
    module = RecLitModule(model, functools.partial(LazyAdam, lr=1e-2), tiny_dm.scenario_names, objectives=objs)
    calls = []
    hook = model.backbone.history_encoder.register_forward_hook(lambda *a: calls.append(1))
    torch.manual_seed(3)
    shared = module.loss(batch)[0]
    shared.backward()
    dense = lambda g: g.to_dense() if g.is_sparse else g  # noqa: E731  (sparse embedding grads: other layouts)
    grads = {n: dense(p.grad).clone() for n, p in model.named_parameters() if p.grad is not None}
    n_shared = len(calls)
    model.zero_grad()
    calls.clear()
    torch.manual_seed(3)  # the same negatives
    separate = module._loss(batch)[0]  # no shared pass: the pointwise forward and each objective encode again
    separate.backward()
    hook.remove()
    assert n_shared == 0 and len(calls) >= 1  # shared: sequence_outputs only, never the encoder's forward
    torch.testing.assert_close(shared, separate)
    for n, p in model.named_parameters():
        if n in grads:
            torch.testing.assert_close(grads[n], dense(p.grad), msg=n)


def test_span_bucketed_sequence_outputs_equal_the_full_pass():
    torch.manual_seed(0)
    enc = CausalSelfAttention(8, max_len=12, dropout=0.0)
    plain = CausalSelfAttention(8, max_len=12, dropout=0.0, bucket_by_span=False)
    plain.load_state_dict(enc.state_dict())
    span = torch.tensor([0, 1, 2, 3, 5, 8, 12, 12, 7])
    mask = torch.arange(12).unsqueeze(0) >= (12 - span).unsqueeze(1)
    hist = torch.randn(len(span), 12, 8) * mask.unsqueeze(-1)
    got, want = enc.sequence_outputs(hist, mask), plain.sequence_outputs(hist, mask)
    torch.testing.assert_close(got, want)
    assert got[0].abs().sum() == 0 and got[1, :-1].abs().sum() == 0  # padding stays zero
    torch.testing.assert_close(enc(hist, mask, None), got[:, -1])
