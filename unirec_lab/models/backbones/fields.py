"""The field-concatenation backbone (``conf/backbone/fields.yaml``, ``input: fields``): the CTR input form.

Every field's embedding is concatenated (user id, each user field, item id, each item field; multi-valued
fields mean-pooled), the dense fields' scaled values appended, and the result feeds the trunk. Unlike the summed
user / item form of :class:`~unirec_lab.models.backbones.shared.SharedBackbone`, the trunk sees each field on its
own, which keeps field-level interactions: the input of Shared-Bottom, MMoE, PLE, STAR in FuxiCTR and
Scenario-Wise Rec. Behaviour histories are not an input of this form (the CTR benchmarks it reproduces have none).

Head contract (models/heads/base.py): ``h`` = trunk output; ``user`` / ``item`` = the concatenated user-side /
item-side inputs (widths in ``feature_dims``); ``dot`` = <user id vector, item id vector>. Catalogue scoring is
exact and cheap: the trunk's first layer is linear in the concatenation, so it splits into a user part (once
per user) and an item part (once per catalogue) that are added per pair.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from unirec_lab.features import FeatureSpace, Slot
from unirec_lab.models.backbones.shared import PairFeatures
from unirec_lab.models.embedding import FeatureEmbedding

Batch = dict[str, torch.Tensor]


def trunk_layers(in_dim: int, dims: Sequence[int], dropout: float, batch_norm: bool) -> nn.Sequential:
    """``Linear -> [BatchNorm] -> ReLU -> [Dropout]`` per hidden dim (SWR's MLP has the BatchNorm)."""
    if any(d <= 0 for d in dims):
        raise ValueError(f"backbone trunk_dims must be positive, got {list(dims)}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"backbone dropout={dropout}, expected a value in [0, 1)")
    layers: list[nn.Module] = []
    d = in_dim
    for h in dims:
        layers.append(nn.Linear(d, h))
        if batch_norm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        d = h
    return nn.Sequential(*layers)


def run_trunk(trunk: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``trunk(x)``; in eval mode each ``Linear -> BatchNorm`` pair is one ``addmm`` with the BatchNorm's running
    statistics folded into the weights (the same affine map, up to float rounding) and ReLU runs in place:
    evaluation skips a pass and a copy of ``[rows, hidden]`` per layer."""
    if trunk.training:
        return trunk(x)
    layers, i = list(trunk), 0
    while i < len(layers):
        m = layers[i]
        bn = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(m, nn.Linear) and isinstance(bn, nn.BatchNorm1d) and bn.running_var is not None:
            scale = torch.rsqrt(bn.running_var + bn.eps)
            if bn.weight is not None:
                scale = scale * bn.weight
            bias = ((m.bias if m.bias is not None else 0.0) - bn.running_mean) * scale
            if bn.bias is not None:
                bias = bias + bn.bias
            x = torch.addmm(bias, x, (m.weight * scale.unsqueeze(1)).T)
            i += 2
        elif isinstance(m, nn.ReLU):
            x = torch.relu(x) if x.requires_grad else torch.relu_(x)
            i += 1
        else:
            x = m(x)
            i += 1
    return x


class FieldPairs(PairFeatures):
    """:class:`PairFeatures` whose user and item sides have different widths (the concatenations)."""

    def __missing__(self, key: str) -> torch.Tensor:
        if self._user is None or self._item is None or key not in ("user", "item", "dot"):
            raise KeyError(key)
        b, c, u = self.b, self.c, self._user
        item = self._item.expand(b, c, self._item.shape[-1])
        if key == "item":
            value = item.reshape(b * c, -1)
        elif key == "user":
            value = u.unsqueeze(1).expand(b, c, u.shape[-1]).reshape(b * c, -1)
        else:
            d = self.id_dim
            value = (item[..., :d] * u[:, :d].unsqueeze(1)).sum(-1).reshape(-1)
        self[key] = value
        return value


class FieldsBackbone(nn.Module):
    """Embeds a batch field by field and returns ``{"h", "user", "item", "dot"}`` (see the module doc)."""

    def __init__(self, space: FeatureSpace, embedding_dim: int = 16, trunk_dims: Sequence[int] = (128,),
                 dropout: float = 0.0, init_std: float = 1e-4, batch_norm: bool = True,
                 scenario_feature: bool = False, sparse_embeddings: bool = True) -> None:
        super().__init__()
        self.embedding = FeatureEmbedding(space, embedding_dim, init_std=init_std, sparse=sparse_embeddings)
        # dense values enter as they are (appended), not through the summed form's projections
        self.embedding.user_dense_proj = self.embedding.item_dense_proj = None
        self.embedding_dim = d = embedding_dim
        self.user_slots: list[Slot] = list(space.user_slots)
        self.item_slots: list[Slot] = list(space.item_slots)
        self._dense_buffer("user_dense", space.user_dense, space.num_users)
        self._dense_buffer("item_dense", space.item_dense, space.num_items)
        self.user_dim = d * (1 + len(self.user_slots)) + self.user_dense.shape[1]
        self.item_dim = d * (1 + len(self.item_slots)) + self.item_dense.shape[1]
        self.scenario_embedding: nn.Embedding | None = None
        in_dim = self.user_dim + self.item_dim
        if scenario_feature:
            self.scenario_embedding = nn.Embedding(space.num_scenarios, d)
            nn.init.normal_(self.scenario_embedding.weight, 0.0, init_std)
            in_dim += d
        self.in_dim = in_dim
        self.trunk = trunk_layers(in_dim, list(trunk_dims), dropout, batch_norm)
        self.out_dim = list(trunk_dims)[-1] if trunk_dims else in_dim
        self.feature_dims = {"user": self.user_dim, "item": self.item_dim, "dot": 1}

    def _dense_buffer(self, name: str, values: torch.Tensor | None, rows: int) -> None:
        t = values if values is not None else torch.zeros(rows, 0)
        self.register_buffer(name, t.float().clone(), persistent=False)

    def _side(self, side: str, ids: torch.Tensor, block: torch.Tensor | None = None,
              rows: torch.Tensor | None = None) -> torch.Tensor:
        """``[N, width]``: the id vector, each slot's vector, the dense values (padding id 0 -> zeros). The id
        and every single-valued slot come from one gather of the fused table (``block``, when the caller
        gathered it with the other side's); multi-valued bags are pooled."""
        e, shape = self.embedding, ids.shape
        ids = ids.reshape(-1)
        if rows is None:
            rows = getattr(e, f"{side}_features").index_select(0, ids)
        if block is None:
            block = e.single_fields(side, ids, rows, mode="cat")  # [N, 1 + single slots, d], in slot order
        slots = self.user_slots if side == "user" else self.item_slots
        bags = [s for s in slots if s.kind != "categorical" and s.width > 1]
        if not bags:
            parts = [block.reshape(len(ids), -1)]
        else:
            parts, j = [block[:, 0]], 1
            for s in slots:
                if s in bags:
                    parts.append(e.table(s.table)(rows[:, s.start:s.start + s.width]))
                else:
                    parts.append(block[:, j])
                    j += 1
        parts.append(getattr(self, f"{side}_dense").index_select(0, ids))
        out = torch.cat(parts, dim=-1)
        return out.reshape(*shape, out.shape[-1])

    def user_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        return self._side("user", ids)

    def item_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        return self._side("item", ids)

    def _both(self, users: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both sides of ``[N]`` rows with ONE gather of the fused table (one embedding backward per step)."""
        e = self.embedding
        fu, fi = e.user_features.index_select(0, users), e.item_features.index_select(0, items)
        ru, ri = e.single_rows("user", users, fu, mode="cat"), e.single_rows("item", items, fi, mode="cat")
        block = e.lookup(torch.cat([ru, ri], 1))
        k = ru.shape[1]
        return self._side("user", users, block[:, :k], fu), self._side("item", items, block[:, k:], fi)

    def _outputs(self, user: torch.Tensor, item: torch.Tensor, scenario: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = [user, item]
        if self.scenario_embedding is not None:
            parts.append(self.scenario_embedding(scenario))
        h = run_trunk(self.trunk, torch.cat(parts, dim=-1))
        d = self.embedding_dim
        return {"h": h, "user": user, "item": item, "dot": (user[:, :d] * item[:, :d]).sum(-1)}

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self._outputs(*self._both(batch["user"], batch["item"]), batch["scenario"])

    # -- catalogue scoring: user side once per user row, item side once per catalogue --------------------------
    def user_side(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {"user": self.user_vectors(batch["user"]), "scenario": batch["scenario"]}

    def item_side(self, items: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"item": self.item_vectors(items)}

    def pair_features(self, user: dict[str, torch.Tensor], item: dict[str, torch.Tensor]) -> PairFeatures:
        """``forward``'s outputs for every (user row, candidate) pair, user-major: the first trunk layer
        ``W [u; i; s] + b`` is split into ``(W_u u + W_s s + b)`` per user plus ``W_i i`` per candidate."""
        u, it = user["user"], item["item"]
        b, c = len(u), it.shape[-2]
        first = self.trunk[0] if len(self.trunk) else None
        if not isinstance(first, nn.Linear):  # no trunk layer to split: build the pair rows
            its = it.expand(b, c, it.shape[-1]).reshape(b * c, -1)
            rep = torch.arange(b, device=u.device).repeat_interleave(c)
            out = FieldPairs(self._outputs(u.index_select(0, rep), its, user["scenario"].index_select(0, rep)), b, c)
            out.id_dim = self.embedding_dim
            return out
        w, du = first.weight, self.user_dim
        z_user = u @ w[:, :du].T + first.bias
        if self.scenario_embedding is not None:
            z_user = z_user + self.scenario_embedding(user["scenario"]) @ w[:, du + self.item_dim:].T
        z_item = it @ w[:, du:du + self.item_dim].T  # [C, H] or [b, C, H]
        h = (z_user.unsqueeze(1) + z_item).reshape(b * c, -1)
        for layer in self.trunk[1:]:
            h = layer(h)
        out = FieldPairs({"h": h}, b, c, user=u, item=it)
        out.id_dim = self.embedding_dim
        return out

    def describe(self) -> str:
        sc = ", scenario feature" if self.scenario_embedding is not None else ""
        return (f"{type(self).__name__}(d={self.embedding_dim}, {1 + len(self.user_slots)}+{1 + len(self.item_slots)}"
                f" fields, {self.user_dense.shape[1] + self.item_dense.shape[1]} dense, input {self.in_dim}{sc})")
