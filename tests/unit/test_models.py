"""Mechanism tests for the model zoo: each would fail on the usual wrong implementation."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import pytest
import torch

from unirec_lab.models.backbones.encoders import CausalSelfAttention, MeanPooling, TargetAttention
from unirec_lab.models.baselines.mf import MatrixFactorization
from unirec_lab.models.baselines.popularity import Popularity, popularity_scores
from unirec_lab.models.heads.mlp import MLPTowers
from unirec_lab.models.heads.mmoe import MMoE
from unirec_lab.models.heads.pepnet import PEPNet
from unirec_lab.models.heads.ple import PLE
from unirec_lab.models.heads.routing import ScenarioPartition
from unirec_lab.models.heads.star import STAR, StarLinear

S, D, E = 3, 12, 6  # scenarios, trunk width, embedding width
FEATURE_DIMS = {"user": E, "item": E, "dot": 1}
SPACE = SimpleNamespace(num_scenarios=S)  # heads only read the number of scenarios
HEADS = {
    "mlp": functools.partial(MLPTowers, hidden_dims=[8]),
    "mmoe": functools.partial(MMoE, num_experts=3, expert_dims=[8, 8], tower_dims=[4]),
    "ple": functools.partial(PLE, num_levels=3, expert_dims=[8], tower_dims=[4]),
    "star": functools.partial(STAR, hidden_dims=[8, 4], aux_dims=[4], extra_inputs=["user", "item"]),
    "pepnet": functools.partial(PEPNet, hidden_dims=[8, 4], gate_hidden_dim=8, scenario_embedding_dim=4),
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is fastest and immune to oversubscription on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _inputs(n: int = 60, shift: bool = True) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    scenario = torch.arange(n) % S
    h = torch.randn(n, D)
    if shift:  # scenario-dependent input distributions, so per-scenario statistics differ
        h = h * (1 + scenario.unsqueeze(1)) + 3.0 * scenario.unsqueeze(1)
    feats = {"user": torch.randn(n, E), "item": torch.randn(n, E), "dot": torch.randn(n)}
    return h, scenario, feats


def _take(idx: torch.Tensor, h: torch.Tensor, scenario: torch.Tensor, feats: dict[str, torch.Tensor]):
    return h[idx], scenario[idx], {k: v[idx] for k, v in feats.items()}


# ------------------------------------------------------------------------------------------- routing
def test_partition_matches_a_per_row_reference() -> None:
    scenario = torch.tensor([2, 0, 2, 1, 0, 2, 2])
    x = torch.randn(7, 4)
    mods = [torch.nn.Linear(4, 2) for _ in range(S)]
    part = ScenarioPartition(scenario, S)
    out = part.map(lambda s, xs: mods[s](xs), x)  # the heads' path
    ref = torch.stack([mods[int(s)](x[i]) for i, s in enumerate(scenario)])
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.equal(part.merge(part.split(x)), x)
    # each present scenario's chunk holds exactly its rows, in batch order
    assert part.present == [0, 1, 2]
    assert [c.tolist() for c in part.split(torch.arange(7))] == [[1, 4], [3], [0, 2, 5, 6]]
    with pytest.raises(ValueError, match="out of range"):
        ScenarioPartition(torch.tensor([0, 3]), S)
    with pytest.raises(ValueError, match="empty"):
        ScenarioPartition(torch.tensor([], dtype=torch.long), S)


@pytest.mark.parametrize("name", list(HEADS))
def test_head_eval_output_of_a_row_does_not_depend_on_the_batch(name: str) -> None:
    head = HEADS[name](SPACE, D, feature_dims=FEATURE_DIMS)
    h, scenario, feats = _inputs()
    head.train()
    for _ in range(3):  # moves STAR's running statistics away from their init
        head(h, scenario, feats)
    head.eval()
    full = head(h, scenario, feats)
    assert full.shape == (len(h),)
    for idx in (torch.tensor([4]), torch.tensor([4, 7, 10]), torch.tensor([4, 5, 6, 1, 2])):
        sub = head(*_take(idx, h, scenario, feats))
        assert torch.allclose(sub, full[idx], atol=1e-5), name


# ---------------------------------------------------------------------------------------------- STAR
def test_star_eval_uses_per_scenario_running_statistics() -> None:
    head = STAR(SPACE, D, hidden_dims=[8], aux_dims=[4])
    h, scenario, feats = _inputs(90)
    head.train()
    out_train = head(h, scenario, feats)
    # training-mode statistics are per scenario: a row's output depends on its own scenario's rows only
    keep = scenario != 2
    assert torch.allclose(head(*_take(torch.nonzero(keep).flatten(), h, scenario, feats)), out_train[keep],
                          atol=1e-5)
    for _ in range(200):
        head(h, scenario, feats)
    rm, rv = head.norm.running_mean, head.norm.running_var
    for s in range(S):
        xs = h[scenario == s]
        assert torch.allclose(rm[s], xs.mean(0), atol=1e-3)
        assert torch.allclose(rv[s], xs.var(0, unbiased=True), rtol=1e-3, atol=1e-3)
    assert not torch.allclose(rm[0], rm[2], atol=1.0)  # scenarios were shifted by 3 per index

    head.eval()
    row = torch.tensor([5])  # scenario 2
    alone = head(*_take(row, h, scenario, feats))
    with_others = head(*_take(torch.cat([row, torch.arange(12)]), h, scenario, feats))[:1]
    with_own = head(*_take(torch.tensor([5, 2, 8, 11]), h, scenario, feats))[:1]
    big = head(*_take(torch.cat([row, torch.arange(90)]), h, scenario, feats))[:1]
    for other in (with_others, with_own, big):
        assert torch.allclose(alone, other, atol=1e-6)
    # ... and the eval normalisation is exactly the running-statistics formula of the row's scenario
    n = head.norm
    z = (h[5] - rm[2]) / torch.sqrt(rv[2] + n.eps) * (n.gamma * n.gamma_s[2]) + (n.beta + n.beta_s[2])
    assert torch.allclose(n(2, h[5:6]), z.unsqueeze(0), atol=1e-5)


def test_whole_batch_normalisation_would_fail_the_star_test() -> None:
    """Sanity of the test above: BatchNorm over the whole batch makes a row depend on its batch-mates."""
    bn = torch.nn.BatchNorm1d(D).train()
    h, _, _ = _inputs()
    assert not torch.allclose(bn(h[:10])[0], bn(h[:30])[0], atol=1e-3)


def test_star_layer_is_shared_times_scenario_weights() -> None:
    layer = StarLinear(S, 5, 3)
    with torch.no_grad():
        layer.w_s.normal_()
        layer.b_s.normal_()
    x = torch.randn(4, 5)
    for s in range(S):
        ref = x @ (layer.w_shared * layer.w_s[s]) + layer.b_shared + layer.b_s[s]
        assert torch.allclose(layer(s, x), ref, atol=1e-6)


def test_star_single_row_scenario_in_training_uses_running_stats() -> None:
    head = STAR(SPACE, D, hidden_dims=[8], aux_dims=[4]).train()
    h, scenario, feats = _inputs(7)  # scenario = row % 3
    idx = torch.tensor([0, 1, 2])  # one row of each scenario
    out = head(*_take(idx, h, scenario, feats))
    assert torch.isfinite(out).all()
    assert int(head.norm.num_batches_tracked.sum()) == 0


# ---------------------------------------------------------------------------------------------- MMoE
def test_mmoe_gates_are_per_scenario_distributions() -> None:
    head = MMoE(SPACE, D, num_experts=4, expert_dims=[8], tower_dims=[4], feature_dims=FEATURE_DIMS)
    h, scenario, feats = _inputs(30)
    g = head.gate_weights(h, scenario, feats)
    assert g.shape == (30, 4)
    assert (g >= 0).all()
    assert torch.allclose(g.sum(-1), torch.ones(30), atol=1e-6)
    same_h = h[:1].expand(S, -1)
    per_s = head.gate_weights(same_h, torch.arange(S))
    assert not torch.allclose(per_s[0], per_s[1])  # each scenario has its own gate
    # forward = tower_s(sum_e g_e * expert_e) for the row's own scenario
    x = h[:1]
    experts = head.experts(x)
    s = int(scenario[0])
    ref = head.towers[s]((head._gate(s, x).unsqueeze(-1) * experts).sum(1)).squeeze(-1)
    assert torch.allclose(head(x, scenario[:1], feats), ref, atol=1e-6)


def test_ple_single_level_has_no_shared_gate_and_runs() -> None:
    head = PLE(SPACE, D, num_levels=1, expert_dims=[8], tower_dims=[4])
    assert head.levels[0].shared_gate is None
    h, scenario, feats = _inputs(9)
    assert head(h, scenario, feats).shape == (9,)
    deep = PLE(SPACE, D, num_levels=3, expert_dims=[8], tower_dims=[4])
    assert [lvl.shared_gate is None for lvl in deep.levels] == [False, False, True]


# -------------------------------------------------------------------------------------------- PEPNet
def test_pepnet_gates_are_two_sigmoid_and_neutral_gates_are_identity() -> None:
    head = PEPNet(SPACE, D, hidden_dims=[8, 4], gate_hidden_dim=8, feature_dims=FEATURE_DIMS)
    h, scenario, feats = _inputs(20)
    x, ep, pp = head.gates(h, scenario, feats)
    assert ep is not None and ep.shape == (20, 2 * E) and len(pp) == 2
    for g in (ep, *pp):
        assert (g > 0).all() and (g < 2).all()
    with torch.no_grad():  # zero last gate layers: every gate is exactly 2 * sigmoid(0) = 1
        for unit in (head.epnet, *head.ppnet):
            unit.net[-1].weight.zero_()
            unit.net[-1].bias.zero_()
    z = torch.cat([h, feats["user"], feats["item"]], dim=-1)
    for layer in head.layers:
        z = torch.relu(layer(z))
    ref = torch.stack([head.out[int(s)](z[i]) for i, s in enumerate(scenario)]).squeeze(-1)
    assert torch.allclose(head(h, scenario, feats), ref, atol=1e-6)


def test_pepnet_gate_inputs_are_stop_gradient() -> None:
    head = PEPNet(SPACE, D, hidden_dims=[4], gate_hidden_dim=4, scenario_embedding_dim=4,
                  feature_dims=FEATURE_DIMS)
    h, scenario, feats = _inputs(8)
    user = feats["user"].clone().requires_grad_()
    _, ep, _ = head.gates(h, scenario, {**feats, "user": user})
    ep.sum().backward()  # the gate value itself does not backpropagate into the embedding it gates
    assert user.grad is None or torch.count_nonzero(user.grad) == 0


# ----------------------------------------------------------------------------------- history encoders
def _left_padded(B: int = 16, K: int = 10, d: int = 8, empty_rows: int = 2):
    lens = torch.randint(1, K + 1, (B,))
    lens[:empty_rows] = 0
    mask = torch.arange(K).unsqueeze(0) >= (K - lens).unsqueeze(1)
    hist = torch.randn(B, K, d) * mask.unsqueeze(-1)
    return hist, mask


@pytest.mark.parametrize("normalise", [True, False])
def test_target_attention_gives_padding_exactly_zero_weight(normalise: bool) -> None:
    enc = TargetAttention(8, attention_dims=[16, 8], normalise=normalise)
    hist, mask = _left_padded()
    target = torch.randn(16, 8)
    w = enc.attention_weights(hist, mask, target)
    assert torch.all(w[~mask] == 0)
    assert (w[mask] > 0).all()
    if normalise:
        full = mask.any(1)
        assert torch.allclose(w[full].sum(-1), torch.ones(int(full.sum())), atol=1e-6)
    out = enc(hist, mask, target)
    assert torch.all(out[~mask.any(1)] == 0)  # empty history -> zero vector
    garbage = hist + 100.0 * (~mask).unsqueeze(-1)  # whatever sits in the padded slots is ignored
    assert torch.allclose(enc(garbage, mask, target), out, atol=1e-5)


def test_target_attention_factorised_first_layer_equals_the_concatenation() -> None:
    enc = TargetAttention(8, attention_dims=[16, 8])
    hist, mask = _left_padded()
    t = torch.randn(16, 8)
    tt = t.unsqueeze(1).expand_as(hist)
    x = torch.cat([hist, tt, hist - tt, hist * tt], dim=-1)
    ref = enc.rest(enc.first(x.reshape(-1, 32))).view(16, 10)
    assert torch.allclose(enc.scores(hist, t), ref, atol=1e-5)
    # the target matters (it is target attention, not self-pooling)
    assert not torch.allclose(enc(hist, mask, t)[2:], enc(hist, mask, -t)[2:])


def test_causal_encoder_position_t_ignores_later_positions() -> None:
    enc = CausalSelfAttention(8, max_len=12, num_layers=2, num_heads=2, dropout=0.1).eval()
    K = 10
    hist, mask = _left_padded(K=K, empty_rows=0)
    mask[:] = True  # full histories, so every position is real
    hist = torch.randn(16, K, 8)
    base = enc.sequence_outputs(hist, mask)
    for t in (0, 4, 8):
        changed = hist.clone()
        changed[:, t + 1:] = torch.randn_like(changed[:, t + 1:])
        out = enc.sequence_outputs(changed, mask)
        assert torch.allclose(out[:, :t + 1], base[:, :t + 1], atol=1e-6)
        assert not torch.allclose(out[:, t + 1:], base[:, t + 1:], atol=1e-3)


def test_causal_encoder_left_padding_has_no_nan_and_padding_is_inert() -> None:
    enc = CausalSelfAttention(8, max_len=10, num_layers=2, num_heads=2, dropout=0.0)
    hist, mask = _left_padded(K=10, empty_rows=3)
    hist.requires_grad_()
    seq = enc.sequence_outputs(hist, mask)
    assert torch.isfinite(seq).all()
    assert torch.all(seq[~mask] == 0)
    out = enc(hist, mask, None)
    assert torch.allclose(out, seq[:, -1], atol=1e-6)  # forward = state at the last (most recent) position
    assert torch.all(out[:3] == 0)  # empty histories
    out.sum().backward()
    assert torch.isfinite(hist.grad).all()
    garbage = hist.detach() + 50.0 * (~mask).unsqueeze(-1)
    assert torch.allclose(enc(garbage, mask, None), out, atol=1e-5)
    # shorter K: positions are right-aligned, so the same suffix gives the same state
    full = mask.all(1)
    if not full.all():
        short = enc(hist.detach()[:, 4:], mask[:, 4:], None)
        rows = (mask[:, :4].sum(1) == 0)  # histories that fit in the last 6 positions
        assert torch.allclose(short[rows], out[rows].detach(), atol=1e-5)
    with pytest.raises(ValueError, match="max_len"):
        enc(torch.zeros(2, 11, 8), torch.ones(2, 11, dtype=torch.bool), None)


def test_causal_encoder_init_is_normal_002() -> None:
    enc = CausalSelfAttention(64, max_len=50, num_layers=2, num_heads=2)
    w = enc.blocks[0].qkv.weight.detach()
    assert abs(float(w.std()) - 0.02) < 0.002 and float(enc.blocks[0].qkv.bias.detach().abs().max()) == 0.0
    assert abs(float(enc.position.weight.detach().std()) - 0.02) < 0.003


def test_mean_pooling_ignores_padding() -> None:
    hist, mask = _left_padded()
    out = MeanPooling(8)(hist, mask, None)
    ref = torch.stack([hist[i][mask[i]].mean(0) if mask[i].any() else torch.zeros(8) for i in range(16)])
    assert torch.allclose(out, ref, atol=1e-6)


# ------------------------------------------------------------------------------------------ baselines
def _space(counts: list[int], pos: list[int], item_scenario: list[int], num_scenarios: int = 2):
    return SimpleNamespace(num_users=5, num_items=len(counts), num_scenarios=num_scenarios,
                           item_train_count=torch.tensor(counts), item_train_pos=torch.tensor(pos),
                           item_scenario=torch.tensor(item_scenario))


def test_mf_score_is_exactly_the_dot_product_without_biases() -> None:
    space = _space([0] * 7, [0] * 7, [-1] + [0] * 6)
    mf = MatrixFactorization(space, embedding_dim=4, bias=False)
    assert not hasattr(mf, "user_bias")
    users, items = torch.tensor([1, 2, 3, 4]), torch.tensor([6, 5, 1, 2])
    out = mf({"user": users, "item": items})
    assert torch.equal(out, (mf.user.weight[users] * mf.item.weight[items]).sum(-1))
    mfb = MatrixFactorization(space, embedding_dim=4, bias=True)
    with torch.no_grad():
        mfb.user_bias.weight.normal_()
        mfb.item_bias.weight.normal_()
        mfb.global_bias.fill_(0.3)
    ref = ((mfb.user.weight[users] * mfb.item.weight[items]).sum(-1) + mfb.user_bias.weight[users, 0]
           + mfb.item_bias.weight[items, 0] + 0.3)
    assert torch.allclose(mfb({"user": users, "item": items}), ref, atol=1e-6)
    assert sum(p.numel() for p in mf.parameters()) == (5 + 7) * 4


def test_popularity_ranks_items_by_train_popularity() -> None:
    #              pad  s0 items ..............  s1 items ......
    counts = [0, 50, 10, 30, 0, 5, 40, 2, 20]
    pos = [0, 10, 9, 3, 0, 5, 4, 2, 10]
    item_scenario = [-1, 0, 0, 0, 0, 0, 1, 1, 1]
    space = _space(counts, pos, item_scenario)
    items = torch.arange(1, 9)
    for kind, key in (("count", torch.tensor(counts)), ("positives", torch.tensor(pos))):
        model = Popularity(space, kind=kind, smoothing=1.0)
        scores = model({"item": items})
        # strictly higher popularity -> strictly higher score; ties stay ties
        for i in range(8):
            for j in range(8):
                a, b = key[items[i]], key[items[j]]
                assert (scores[i] > scores[j]) == bool(a > b) and (scores[i] == scores[j]) == bool(a == b)
    rate = popularity_scores(space, "rate", smoothing=1.0)
    # smoothed rate: 9/10 beats 10/50; an unseen item sits at its scenario's prior, not at 0
    assert rate[2] > rate[1] > rate[3]
    prior0 = (27 + 1) / (95 + 2)
    assert torch.isclose(rate[4], torch.tensor(prior0).log().float())
    assert torch.all(rate[0] < rate[1:])  # padding scores lowest
    # calibration scalars cannot reorder items
    model = Popularity(space, kind="rate", smoothing=1.0)
    ref = torch.argsort(model({"item": items}))
    with torch.no_grad():
        model.log_scale.fill_(2.5)
        model.bias.fill_(-4.0)
    assert torch.equal(torch.argsort(model({"item": items})), ref)
    assert sum(p.numel() for p in model.parameters()) == 2
    with pytest.raises(ValueError, match="kind"):
        Popularity(space, kind="clicks")
    with pytest.raises(ValueError, match="train statistics"):
        Popularity(SimpleNamespace(item_train_count=None, item_train_pos=None), kind="count")


def test_encoders_accept_an_empty_history() -> None:
    hist, mask, target = torch.zeros(4, 0, 8), torch.zeros(4, 0, dtype=torch.bool), torch.randn(4, 8)
    for enc in (MeanPooling(8), TargetAttention(8, attention_dims=[8]), CausalSelfAttention(8, max_len=0)):
        out = enc(hist, mask, target)
        assert out.shape == (4, 8) and torch.all(out == 0)


@pytest.mark.parametrize("make", [
    lambda b: TargetAttention(8, attention_dims=[8], bucket_by_span=b),
    lambda b: CausalSelfAttention(8, max_len=20, num_layers=2, num_heads=2, dropout=0.1, bucket_by_span=b),
])
def test_span_bucketing_is_exact(make) -> None:
    """Running rows grouped by history span, cut to the span, equals running the full padded batch."""
    torch.manual_seed(1)
    fast = make(True).eval()
    slow = make(False).eval()
    slow.load_state_dict(fast.state_dict())
    hist, mask = _left_padded(B=64, K=20, empty_rows=5)
    mask[5, 12] = False  # a hole inside a history is kept (the span starts at the first real position)
    hist[5, 12] = 0.0
    target = torch.randn(64, 8)
    hist.requires_grad_()
    a = fast(hist, mask, target)
    b = slow(hist, mask, target)
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.all(a[:5] == 0)
    (g_fast,) = torch.autograd.grad(a.sum(), hist)
    (g_slow,) = torch.autograd.grad(b.sum(), hist)
    assert torch.allclose(g_fast, g_slow, atol=1e-5)
