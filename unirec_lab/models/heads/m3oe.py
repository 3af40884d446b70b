"""M3oE (Zhang et al., "M3oE: Multi-Domain Multi-Task Mixture-of-Experts Recommendation Framework", SIGIR
2024) as a scenario head: shared, scenario and task expert groups fused with learned weights.

Equations (``x`` = head input, ``s`` = the row's scenario, ``S`` scenarios, one task: CTR):

- bottom (STAR-style): ``u = LN-MLP(x (W ⊙ W_s) + b + b_s) + LN-MLP_skip(x)`` (``LN-MLP`` = ``Linear ->
  LayerNorm -> ReLU``);
- three expert groups on ``u``, each expert an ``LN-MLP``:
  *shared* experts ``E_1..E_K`` mixed by scenario ``s``'s gate ``g_s = softmax(W_g^s sg(u))``;
  *scenario* experts ``D_1..D_S``, balanced for scenario ``s`` as
  ``D̃_s = w_bal D_s + (1 - w_bal)/(S - 1) Σ_{j≠s} D_j`` (``D̃_s = D_s`` when ``S = 1``);
  *task* expert ``T`` (one task);
- fusion: ``f = Σ_k g_s,k E_k + w_d D̃_s + w_t T`` with ``w_bal = σ(β_bal)``, ``w_d = σ(β_d)``,
  ``w_t = σ(β_t)`` learned scalars (the paper's AutoML-searched weights, SWR's ``softmax_type=3``);
- ``logit = Tower_s(f)`` with ``Tower_s = Linear -> LayerNorm -> ReLU -> Linear`` on ``s``'s rows only.

Every scenario expert runs on every row (the balance mixes them all), the gate and tower of ``s`` on ``s``'s
rows only.

Differences from SWR's ``M3oE`` (scenario_wise_rec/models/multi_domain/m3oe.py):

- the task group is present (one expert, weight ``w_t``); SWR has it commented out, so its fusion is shared +
  scenario only (set ``task_expert: false`` for SWR's form). With one task the task balance weight is
  irrelevant and is not a parameter;
- ``W_s`` starts at 1 and ``b_s`` at 0 (STAR's init); SWR draws ``W`` and ``W_s`` both Xavier-uniform;
- SWR evaluates every scenario's star layer, gate and tower on every row and keeps the row's own;
- the logit is returned (the loss applies the sigmoid); SWR decreases an unused temperature at each call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from unirec_lab.features import FeatureSpace
from unirec_lab.models.heads.banks import NormedExpertBank
from unirec_lab.models.heads.base import HeadInputs, ScenarioParams, module_params, stacked_params
from unirec_lab.models.heads.routing import ScenarioPartition
from unirec_lab.models.heads.star import StarLinear


def _ln_layer(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.LayerNorm(out_dim), nn.ReLU())


class M3oE(nn.Module):
    def __init__(self, space: FeatureSpace, in_dim: int, star_dims: Sequence[int] = (128, 64),
                 expert_dims: Sequence[int] = (32,), num_shared_experts: int = 4, task_expert: bool = True,
                 balance_init: float = 1.0, scenario_weight_init: float = 1.0, task_weight_init: float = 1.0,
                 detach_gate_input: bool = True, extra_inputs: Sequence[str] = (),
                 feature_dims: Mapping[str, int] | None = None) -> None:
        super().__init__()
        star_dims = list(star_dims)
        if len(star_dims) != 2 or any(d <= 0 for d in star_dims):
            raise ValueError(f"head.star_dims={star_dims}, expected two positive ints (star layer, bottom output)")
        if num_shared_experts <= 0:
            raise ValueError(f"head.num_shared_experts={num_shared_experts}, expected a positive integer")
        self.num_scenarios = S = space.num_scenarios
        self.inputs = HeadInputs(in_dim, extra_inputs, feature_dims)
        d = self.inputs.out_dim
        self.star = StarLinear(S, d, star_dims[0])
        self.star_mlp = _ln_layer(star_dims[0], star_dims[1])
        self.skip = _ln_layer(d, star_dims[1])
        u = star_dims[1]
        self.shared = NormedExpertBank(u, expert_dims, num_shared_experts)
        self.scenario_experts = NormedExpertBank(u, expert_dims, S)
        self.task = NormedExpertBank(u, expert_dims, 1) if task_expert else None
        self.gate_w = nn.Parameter(torch.empty(S, u, num_shared_experts).uniform_(-u ** -0.5, u ** -0.5))
        self.gate_b = nn.Parameter(torch.zeros(S, num_shared_experts))
        self.balance_logit = nn.Parameter(torch.tensor(float(balance_init)))
        self.scenario_logit = nn.Parameter(torch.tensor(float(scenario_weight_init)))
        self.task_logit = nn.Parameter(torch.tensor(float(task_weight_init))) if task_expert else None
        o = self.shared.out_dim
        self.towers = nn.ModuleList(nn.Sequential(_ln_layer(o, o), nn.Linear(o, 1)) for _ in range(S))
        self.detach_gate_input = detach_gate_input

    def fusion_weights(self) -> dict[str, torch.Tensor]:
        """``w_bal``, ``w_d`` (and ``w_t``): the sigmoid fusion weights."""
        out = {"balance": torch.sigmoid(self.balance_logit), "scenario": torch.sigmoid(self.scenario_logit)}
        if self.task_logit is not None:
            out["task"] = torch.sigmoid(self.task_logit)
        return out

    def bottom(self, h: torch.Tensor, scenario: torch.Tensor, feats: Mapping[str, torch.Tensor]) -> torch.Tensor:
        x = self.inputs(h, feats)
        star = ScenarioPartition(scenario, self.num_scenarios).map(self.star, x)
        return self.star_mlp(star) + self.skip(x)

    def groups(self, u: torch.Tensor, scenario: torch.Tensor) -> dict[str, torch.Tensor]:
        """The expert groups' outputs for bottom ``u``: ``shared [B, K, o]`` with its ``gate [B, K]``,
        ``scenario [B, S, o]`` and ``task [B, 1, o]`` (when present)."""
        g_in = u.detach() if self.detach_gate_input else u
        gate = ScenarioPartition(scenario, self.num_scenarios).map(
            lambda s, us: torch.softmax(torch.addmm(self.gate_b[s], us, self.gate_w[s]), dim=-1), g_in)
        out = {"shared": self.shared(u), "gate": gate, "scenario": self.scenario_experts(u)}
        if self.task is not None:
            out["task"] = self.task(u)
        return out

    def fuse(self, g: Mapping[str, torch.Tensor], scenario: torch.Tensor) -> torch.Tensor:
        """``Σ g E + w_d D̃_s + w_t T`` per row (see the module doc)."""
        w = self.fusion_weights()
        dom, S = g["scenario"], self.num_scenarios
        own = dom[torch.arange(len(scenario), device=dom.device), scenario]
        if S > 1:
            balanced = w["balance"] * own + (1 - w["balance"]) / (S - 1) * (dom.sum(1) - own)
        else:
            balanced = own
        f = (g["gate"].unsqueeze(-1) * g["shared"]).sum(1) + w["scenario"] * balanced
        if "task" in g:
            f = f + w["task"] * g["task"][:, 0]
        return f

    def forward(self, h: torch.Tensor, scenario: torch.Tensor, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        f = self.fuse(self.groups(self.bottom(h, scenario, feats), scenario), scenario)
        return ScenarioPartition(scenario, self.num_scenarios).map(lambda s, fs: self.towers[s](fs).squeeze(-1), f)

    def scenario_parameters(self, s: int) -> ScenarioParams:
        return (stacked_params("star", {"w_s": self.star.w_s, "b_s": self.star.b_s}, s)
                + stacked_params("gate", {"w": self.gate_w, "b": self.gate_b}, s)
                + module_params(f"towers.{s}", self.towers[s]))

    def describe(self) -> str:
        task = " + 1 task expert" if self.task is not None else ""
        return (f"M3oE({self.shared.num} shared + {self.num_scenarios} scenario experts{task}, "
                f"STAR bottom, {self.num_scenarios} towers)")
