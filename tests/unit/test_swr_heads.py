"""The Scenario-Wise Rec heads (SAR-Net, M2M, AdaSparse, AdaptDHM, EPNet, PPNet, HAMUR, M3oE): one mechanism
test each that fails on a wrong implementation, plus the head contract (own parameters get gradient from own
rows only, eval scores do not depend on the batch, catalogue scoring equals forward)."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from unirec_lab.evaluation.catalogue import CatalogueRanker
from unirec_lab.models.backbones.encoders import MeanPooling
from unirec_lab.models.backbones.shared import SharedBackbone
from unirec_lab.models.builders import build_unified
from unirec_lab.models.heads.adaptdhm import AdaptDHM
from unirec_lab.models.heads.adasparse import AdaSparse
from unirec_lab.models.heads.epnet import EPNet
from unirec_lab.models.heads.hamur import HAMUR
from unirec_lab.models.heads.m2m import M2M
from unirec_lab.models.heads.m3oe import M3oE
from unirec_lab.models.heads.ppnet import PPNet
from unirec_lab.models.heads.sarnet import SARNet

S, D, U = 3, 12, 6  # scenarios, trunk width, user / item vector width
SPACE = SimpleNamespace(num_scenarios=S)  # a head reads only the scenario count from the feature space
DIMS = {"user": U, "item": U, "dot": 1}
HEADS = {
    "sarnet": functools.partial(SARNet, shared_experts=3, specific_experts=2, expert_dim=8, tower_dims=[8]),
    "m2m": functools.partial(M2M, num_experts=3, expert_dim=6, scenario_embedding_dim=4, tower_dims=[8]),
    "m2m_transformer": functools.partial(M2M, num_experts=3, expert_dim=6, scenario_embedding_dim=4, tower_dims=[8],
                                         transformer_layers=[1, 1], transformer_heads=2, transformer_dropout=0.0),
    "adasparse": functools.partial(AdaSparse, hidden_dims=[16, 8], scenario_embedding_dim=4),
    "adaptdhm": functools.partial(AdaptDHM, hidden_dims=[16, 8], num_clusters=3, scenario_embedding_dim=4),
    "epnet": functools.partial(EPNet, hidden_dims=[16, 8], scenario_embedding_dim=4),
    "ppnet": functools.partial(PPNet, hidden_dims=[16, 8]),
    "hamur": functools.partial(HAMUR, hidden_dims=[16, 8], adapter_dim=6, rank=4, hyper_dims=[8],
                               scenario_embedding_dim=4),
    "m3oe": functools.partial(M3oE, star_dims=[16, 12], expert_dims=[8], num_shared_experts=3),
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _head(name: str, **kw):
    torch.manual_seed(0)
    return HEADS[name](SPACE, D, feature_dims=DIMS, **kw)


def _inputs(n: int = 60, seed: int = 0, scenarios: tuple[int, ...] = (0, 1, 2)):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, D, generator=g)
    feats = {"user": torch.randn(n, U, generator=g), "item": torch.randn(n, U, generator=g)}
    feats["dot"] = (feats["user"] * feats["item"]).sum(-1)
    sc = torch.tensor(scenarios)[torch.randint(len(scenarios), (n,), generator=g)]
    return h, sc, feats


def _perturbed(module_param: torch.Tensor, index=None, scale: float = 0.5) -> None:
    with torch.no_grad():
        target = module_param if index is None else module_param[index]
        target.add_(torch.randn_like(target) * scale)


# ----------------------------------------------------------------------------------------- the head contract
@pytest.mark.parametrize("name", list(HEADS))
def test_head_fits_and_routes_gradient_per_scenario(name: str) -> None:
    head = _head(name).train()
    h, sc, feats = _inputs(96)
    y = ((h[:, 0] + sc.float() - 1) > 0).float()  # depends on the scenario: a head must use it
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = F.binary_cross_entropy_with_logits(head(h, sc, feats), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses[::10]

    # a batch of scenario 0 only: no other scenario's own parameter slice gets gradient; scenario 0's does
    h0, sc0, f0 = _inputs(32, seed=1, scenarios=(0,))
    head.zero_grad(set_to_none=True)
    head(h0, sc0, f0).sum().backward()
    own = head.scenario_parameters(0)
    assert own and any(p.grad is not None and (p.grad if i is None else p.grad[i]).abs().sum() > 0
                       for _, p, i in own)
    seen = {(id(p), i) for _, p, i in own}
    for s in (1, 2):
        for pname, p, i in head.scenario_parameters(s):
            assert (id(p), i) not in seen, f"{pname} listed for two scenarios"
            g = p.grad if p.grad is None or i is None else p.grad[i]
            assert g is None or torch.count_nonzero(g) == 0, f"{pname} got gradient from scenario 0 rows"


@pytest.mark.parametrize("name", list(HEADS))
def test_eval_scores_do_not_depend_on_the_batch(name: str) -> None:
    head = _head(name)
    h, sc, feats = _inputs(40)
    head.train()
    for seed in range(3):  # move running statistics / centres / alpha off their initial values
        head(*_inputs(40, seed=10 + seed))
    head.eval()
    with torch.no_grad():
        full = head(h, sc, feats)
        part = head(h[5:9], sc[5:9], {k: v[5:9] for k, v in feats.items()})
        alone = head(h[:1], sc[:1], {k: v[:1] for k, v in feats.items()})
    torch.testing.assert_close(part, full[5:9])
    torch.testing.assert_close(alone, full[:1])


def _randomise(model):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return model


@pytest.mark.parametrize("name", list(HEADS))
def test_catalogue_scoring_equals_forward(tiny_dm, name: str) -> None:
    bb = functools.partial(SharedBackbone, history_encoder=MeanPooling, embedding_dim=8, trunk_dims=[16])
    model = _randomise(build_unified(tiny_dm.space, bb, HEADS[name]))
    model.train()
    model(tiny_dm.splits["train"])  # one training pass: running statistics and centres in use
    items = torch.nonzero(tiny_dm.space.item_scenario == 1, as_tuple=True)[0]
    te = tiny_dm.splits["test"]
    rows = torch.nonzero(te["scenario"] == 1, as_tuple=True)[0][:10]
    batch = {k: v[rows] for k, v in te.items()}
    got = CatalogueRanker(model, items, block_rows=64).scores(batch)
    ref = CatalogueRanker(model, items, cached=False).scores(batch)
    assert ref.std() > 1e-3
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------------ SAR-Net
def test_sarnet_transfer_and_specific_experts_change_only_their_scenarios_rows() -> None:
    head = _head("sarnet").eval()
    h, sc, feats = _inputs(60)
    with torch.no_grad():
        before = head(h, sc, feats)
        _perturbed(head.transfer_w, 1)
        after_w = head(h, sc, feats)
        _perturbed(head.specific[2][1].weight)
        after_e = head(h, sc, feats)
        _perturbed(head.shared[1].weight)
        after_shared = head(h, sc, feats)
    assert torch.equal(after_w[sc != 1], before[sc != 1]) and (after_w[sc == 1] != before[sc == 1]).all()
    assert torch.equal(after_e[sc != 2], after_w[sc != 2]) and (after_e[sc == 2] != after_w[sc == 2]).all()
    assert (after_shared != after_e).all()  # shared experts serve every row
    # the transfer is x * w_s + b_s
    torch.testing.assert_close(head.transfer(h, sc, feats), h * head.transfer_w[sc] + head.transfer_b[sc])
    g = head.gate_weights(head.transfer(h, sc, feats))
    assert g.shape == (60, 3 + 2) and torch.allclose(g.sum(-1), torch.ones(60))


# ---------------------------------------------------------------------------------------------------- M2M
def test_m2m_generated_weights_depend_on_the_scenario_embedding() -> None:
    head = _head("m2m").eval()
    meta = head.meta_weights()
    assert meta["attention_w"].shape == (S, 12, 12) and meta["tower_w"].shape == (S, 6, 6)
    for k, w in meta.items():  # each scenario has its own generated weights
        assert not torch.allclose(w[0], w[1]) and not torch.allclose(w[1], w[2]), k
    with torch.no_grad():
        _perturbed(head.scenario_embedding.weight, 1)
    again = head.meta_weights()
    for k in meta:  # only scenario 1's generated weights moved
        assert torch.equal(again[k][[0, 2]], meta[k][[0, 2]]) and not torch.allclose(again[k][1], meta[k][1])

    # the output of a scenario-s row is the paper's equation with scenario s's generated weights
    h, sc, feats = _inputs(30)
    with torch.no_grad():
        out = head(h, sc, feats)
        e = F.leaky_relu(head.experts(h), 0.01)
        t = head.task.expand(30, 3, -1)
        ws = {k: v[sc] for k, v in again.items()}  # each row's scenario's weights
        a = F.leaky_relu(torch.einsum("bki,bij->bkj", torch.cat([e, t], -1), ws["attention_w"])
                         + ws["attention_b"].unsqueeze(1), 0.01) @ head.v
        m = (torch.softmax(a, 1).unsqueeze(-1) * e).sum(1)
        o = F.leaky_relu(torch.einsum("bi,bij->bj", m, ws["tower_w"]) + ws["tower_b"] + m, 0.01)
        torch.testing.assert_close(out, head.tower(o).squeeze(-1))
        other = head(h, (sc + 1) % S, feats)  # the same rows scored as another scenario
    assert (other != out).all()


def test_m2m_transformer_is_swrs_module_on_each_row_alone() -> None:
    # SWR's nn.Transformer(d_model=112 (7 fields x 16), nhead=4, 2 + 2 layers, feed-forward 16): per encoder
    # layer attention 4*112^2 + 4*112, feed-forward 2*112*16 + 16 + 112, two norms 4*112; per decoder layer two
    # attentions, the feed-forward, three norms; the encoder's and decoder's final norms: 321,280 parameters
    big = M2M(SPACE, 112, transformer_layers=[2, 2], transformer_heads=4)
    assert sum(p.numel() for p in big.transformer.parameters()) == 321_280
    head = _head("m2m", transformer_layers=[1, 1], transformer_heads=2).eval()
    h, sc, feats = _inputs(20)
    with torch.no_grad():
        whole = head(h, sc, feats)
        alone = torch.cat([head(h[i:i + 1], sc[i:i + 1], {k: v[i:i + 1] for k, v in feats.items()})
                           for i in range(20)])
        torch.testing.assert_close(alone, whole)  # no row attends over the others (SWR's rows do)
        _perturbed(head.transformer.encoder.layers[0].linear1.weight)
        assert (head(h, sc, feats) != whole).all()  # the experts read the transformer's output
    # one token: the attention weight is 1, so query and key projections get no gradient, value does
    head.zero_grad()
    head(h, sc, feats).sum().backward()
    g = head.transformer.encoder.layers[0].self_attn.in_proj_weight.grad
    q, k, v = g.chunk(3)
    assert q.abs().max() < 1e-6 and k.abs().max() < 1e-6 and v.abs().max() > 1e-4


# ---------------------------------------------------------------------------------------------- AdaSparse
def test_adasparse_pruner_range_and_per_scenario_zeroes() -> None:
    eps, beta = 0.1, 2.0
    head = _head("adasparse", epsilon=eps, beta=beta, delta_alpha=0.5).eval()
    h, sc, feats = _inputs(60)
    with torch.no_grad():  # pruner 0 reads only the scenario: neurons < D/2 favour scenario 0, the rest 1
        w = head.pruners[0].linear.weight
        w.zero_()
        w[: D // 2, :4] = 1.0
        w[D // 2:, :4] = -1.0
        head.scenario_embedding.weight[0] = 1.0
        head.scenario_embedding.weight[1] = -1.0
        head.scenario_embedding.weight[2] = 0.0
    x, gates = head.pruned(h, sc, feats)
    for pi in gates:  # pi in {0} U [eps, beta): pruned neurons are exactly 0, none negative
        assert ((pi == 0) | ((pi >= eps) & (pi < beta))).all()
    pi0 = gates[0]
    lo, hi = slice(0, D // 2), slice(D // 2, D)
    assert (pi0[sc == 0][:, hi] == 0).all() and (pi0[sc == 0][:, lo] > 1.9).all()
    assert (pi0[sc == 1][:, lo] == 0).all() and (pi0[sc == 1][:, hi] > 1.9).all()
    first = head.layers[0][0]  # the first layer's input: [e_s, pi0 * x], pruned neurons exactly 0
    seen = []
    hook = first.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    head.pruned(h, sc, feats)
    hook.remove()
    torch.testing.assert_close(seen[0], torch.cat([head.scenario_embedding(sc), pi0 * h], dim=-1))
    assert (seen[0][sc == 0][:, 4:][:, hi] == 0).all() and (seen[0][sc == 0][:, 4:][:, lo] != 0).all()
    torch.testing.assert_close(pi0[sc == 2], torch.ones_like(pi0[sc == 2]))  # sigmoid(0) * 2
    # alpha sharpens the gate: it grows in training passes only
    a0 = float(head.alpha)
    head(h, sc, feats)
    assert float(head.alpha) == a0
    head.train()
    head(h, sc, feats)
    assert float(head.alpha) == pytest.approx(a0 + 0.5)
    assert "alpha" in head.state_dict()


# ----------------------------------------------------------------------------------------------- AdaptDHM
def test_adaptdhm_routes_by_the_adaptive_distribution_and_updates_centres() -> None:
    head = _head("adaptdhm", beta=0.7, routing_iters=2)
    d = head.centres.shape[1]
    with torch.no_grad():
        head.centres.copy_(torch.eye(3, d))
    # eval: route to the most similar centre, centres fixed
    x = torch.zeros(6, d)
    x[[0, 1], 0], x[[2, 3], 1], x[[4, 5], 2] = 2.0, 3.0, 1.5
    head.eval()
    assert head.route(x).tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal(head.centres, torch.eye(3, d))
    # training: routing_iters updates c <- normalize(beta c + (1 - beta) sum_i r_ik x_i), then the argmax
    head.train()
    g = torch.Generator().manual_seed(3)
    xb = torch.randn(20, d, generator=g)
    c = torch.eye(3, d)
    for _ in range(2):
        r = torch.softmax(xb @ c.T, dim=1)
        c = F.normalize(0.7 * c + 0.3 * (r.T @ xb), dim=1)
    k = head.route(xb)
    torch.testing.assert_close(head.centres, c)
    assert torch.equal(k, torch.argmax(xb @ c.T, dim=1))

    # a row is scored by the network of its cluster, not of its scenario
    head.eval()
    h, sc, feats = _inputs(60)
    with torch.no_grad():
        k = head.route(head.route_inputs(h, sc, feats))
        assert len(set(k.tolist())) > 1
        before = head(h, sc, feats)
        _perturbed(head.layers[0].w_s, 1)
        after = head(h, sc, feats)
    assert torch.equal(after[k != 1], before[k != 1]) and (after[k == 1] != before[k == 1]).all()


def test_adaptdhm_init_is_swrs_xavier_product_without_biases() -> None:
    # SWR: W and each W_k drawn Xavier-uniform (ReLU gain) on their own, no bias in the forward pass
    head = _head("adaptdhm")
    names = [n for n, _ in head.named_parameters()]
    assert not any(".b_" in n for n in names), names
    first = head.layers[0]
    fan_in, fan_out = first.w_shared.shape
    bound = 2 ** 0.5 * (6 / (fan_in + fan_out)) ** 0.5
    for w in (first.w_shared, *first.w_s):
        assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound
    assert not torch.equal(first.w_s[0], first.w_s[1])  # the clusters start apart, not as one shared network
    x = torch.randn(5, fan_in)
    torch.testing.assert_close(first(1, x), x @ (first.w_shared * first.w_s[1]))
    # the STAR-style alternative: W_k = 1 and biases, every cluster starts as the shared layer
    alt = _head("adaptdhm", init="shared", bias=True).layers[0]
    assert torch.equal(alt.w_s, torch.ones_like(alt.w_s)) and alt.b_s is not None
    torch.testing.assert_close(alt(0, x), alt(2, x))


# ------------------------------------------------------------------------------------------ EPNet / PPNet
def test_epnet_gate_range_and_stop_gradient() -> None:
    head = _head("epnet").eval()
    h, sc, feats = _inputs(40)
    h.requires_grad_(True)
    x, delta = head.gated(h, sc, feats)
    assert ((delta > 0) & (delta < 2)).all()
    (ge,) = torch.autograd.grad(delta.sum(), head.scenario_embedding.weight)
    assert torch.count_nonzero(ge) > 0  # the gate learns from the scenario prior
    (gh,) = torch.autograd.grad(delta.sum(), h, allow_unused=True)
    assert gh is None or torch.count_nonzero(gh) == 0  # sg(x): no gradient from the gate into its input
    head.stop_gradient = False
    (gh,) = torch.autograd.grad(head.gated(h, sc, feats)[1].sum(), h)
    assert torch.count_nonzero(gh) > 0
    with torch.no_grad():
        _, other = head.gated(h, (sc + 1) % S, feats)
    assert not torch.allclose(other, delta)  # the gate is scenario-conditioned


def test_ppnet_gates_stop_gradient_on_the_input_not_on_the_prior() -> None:
    head = _head("ppnet").eval()
    h, sc, feats = _inputs(40)
    h.requires_grad_(True)
    feats["user"].requires_grad_(True)
    g = head.gate_input(head.inputs(h, feats), feats)
    gates = [gate(g) for gate in head.towers[0].gates]
    assert all(((d > 0) & (d < 2)).all() for d in gates)
    gh, gu = torch.autograd.grad(sum(d.sum() for d in gates), [h, feats["user"]], allow_unused=True)
    assert gh is None or torch.count_nonzero(gh) == 0
    assert torch.count_nonzero(gu) > 0  # the prior (ids) learns through the gates
    (gt,) = torch.autograd.grad(head(h, sc, feats).sum(), h)
    assert torch.count_nonzero(gt) > 0  # the tower itself reads x with its gradient (unlike SWR's)
    with torch.no_grad():
        before = head(h, sc, feats)
        _perturbed(head.towers[1].gates[0].net[0].weight)
        after = head(h, sc, feats)
    assert torch.equal(after[sc != 1], before[sc != 1]) and (after[sc == 1] != before[sc == 1]).all()


# -------------------------------------------------------------------------------------------------- HAMUR
def test_hamur_hyper_adapter_differs_per_scenario_and_is_shared() -> None:
    head = _head("hamur").eval()
    h, sc, feats = _inputs(40)
    with torch.no_grad():
        hm = head.hyper_matrix(h, sc, feats)
        hm_other = head.hyper_matrix(h, (sc + 1) % S, feats)
    assert hm.shape == (40, 4, 4) and not torch.allclose(hm, hm_other)
    # the adapter is U H V per row (computed without forming the m x a matrices)
    z = torch.randn(40, 8)
    with torch.no_grad():
        w_down = torch.einsum("mi,bij,jn->bmn", head.u_down, hm, head.v_down)
        w_up = torch.einsum("mi,bij,jn->bmn", head.u_up, hm, head.v_up)
        t = torch.einsum("bm,bmn->bn", torch.sigmoid(torch.einsum("bm,bmn->bn", z, w_down) + head.b_down), w_up)
        t = t + head.b_up
        torch.testing.assert_close(head.adapter(0, z, hm), z + head.norm(0, t))
    # shared: the hyper-network and U, V learn from the rows of every scenario
    head.train()
    shared = [head.hyper[0].weight, head.u_down, head.v_down, head.u_up, head.v_up]
    for s in range(S):
        hs, ss, fs = _inputs(16, seed=s + 5, scenarios=(s,))
        grads = torch.autograd.grad(head(hs, ss, fs).sum(), shared)
        assert all(torch.count_nonzero(g) > 0 for g in grads), s


# --------------------------------------------------------------------------------------------------- M3oE
def test_m3oe_expert_groups_and_fusion_weights() -> None:
    head = _head("m3oe").eval()
    h, sc, feats = _inputs(60)
    with torch.no_grad():
        groups = head.groups(head.bottom(h, sc, feats), sc)
    assert groups["shared"].shape == (60, 3, 8) and groups["scenario"].shape == (60, S, 8)
    assert groups["task"].shape == (60, 1, 8) and torch.allclose(groups["gate"].sum(-1), torch.ones(60))
    with torch.no_grad():
        w = head.fusion_weights()
    assert set(w) == {"balance", "scenario", "task"} and w["task"].item() == pytest.approx(0.7310586)  # sigmoid(1)
    # the fusion formula, by hand
    rows = torch.arange(60)
    own = groups["scenario"][rows, sc]
    others = (groups["scenario"].sum(1) - own) / (S - 1)
    want = ((groups["gate"].unsqueeze(-1) * groups["shared"]).sum(1)
            + w["scenario"] * (w["balance"] * own + (1 - w["balance"]) * others) + w["task"] * groups["task"][:, 0])
    torch.testing.assert_close(head.fuse(groups, sc), want)

    def fused() -> torch.Tensor:
        with torch.no_grad():
            return head.fuse(head.groups(head.bottom(h, sc, feats), sc), sc)

    expert1 = head.scenario_experts.linears[0].weight
    with torch.no_grad():
        head.balance_logit.fill_(40.0)  # w_bal = 1: a row reads its own scenario's expert only
    before = fused()
    with torch.no_grad():
        _perturbed(expert1, 1)
    after = fused()
    assert torch.equal(after[sc != 1], before[sc != 1]) and not torch.allclose(after[sc == 1], before[sc == 1])
    with torch.no_grad():
        head.balance_logit.fill_(-40.0)  # w_bal = 0: a row reads the other scenarios' experts only
    before = fused()
    with torch.no_grad():
        _perturbed(expert1, 1)
    after = fused()
    torch.testing.assert_close(after[sc == 1], before[sc == 1])  # w_bal = sigmoid(-40) ~ 4e-18
    assert not torch.allclose(after[sc != 1], before[sc != 1])
    with torch.no_grad():  # w_d = w_t = 0: only the gated shared experts remain
        head.scenario_logit.fill_(-40.0)
        head.task_logit.fill_(-40.0)
        g = head.groups(head.bottom(h, sc, feats), sc)
        torch.testing.assert_close(head.fuse(g, sc), (g["gate"].unsqueeze(-1) * g["shared"]).sum(1))


# -------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("name, kw, msg", [
    ("adasparse", {"form": "binary"}, r"head.form='binary', expected one of \['fusion', 'scaling'\]"),
    ("adasparse", {"epsilon": 3.0}, r"head.epsilon=3.0, head.beta=2.0: expected 0 <= epsilon < beta"),
    ("adaptdhm", {"beta": 1.5}, r"head.beta=1.5, expected a value in \[0, 1\]"),
    ("adaptdhm", {"init": "ones"}, r"head.init='ones', expected 'xavier' \(SWR's\) or 'shared' \(W_k = 1\)"),
    ("m2m", {"transformer_layers": [2, 2], "transformer_heads": 5},
     r"head.transformer_layers=\[2, 2\], transformer_ff=16, transformer_heads=5: expected .* dividing the input width 12"),
    ("ppnet", {"gate_inputs": ["usr"]}, r"head.gate_inputs \['usr'\] not produced by the backbone"),
    ("m3oe", {"star_dims": [16]}, r"head.star_dims=\[16\], expected two positive ints"),
    ("sarnet", {"shared_experts": 0, "specific_experts": 0}, r"at least one expert"),
    ("hamur", {"rank": 0}, r"rank=0: expected positive integers"),
])
def test_bad_head_settings_fail_with_one_line(name: str, kw: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        _head(name, **kw)
