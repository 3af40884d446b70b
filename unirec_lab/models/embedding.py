"""Embedding tables keyed by namespace, and the lookups that turn ids into user / item vectors.

User and item ids are private per scenario but live in one global table each (scenario offsets, see
``unirec_lab.features``), so a mixed batch needs one lookup. Feature fields are pooled per slot (masked
mean for multi-valued and text fields) and summed with the id vector. Feature matrices are non-persistent
buffers: they are data, rebuilt from bundles, not weights.
"""

from __future__ import annotations

import torch
from torch import nn

from unirec_lab.features import FeatureSpace, Slot


def init_embedding(emb: nn.Embedding, std: float) -> None:
    nn.init.normal_(emb.weight, 0.0, std)
    if emb.padding_idx is not None:
        with torch.no_grad():
            emb.weight[emb.padding_idx].zero_()


class FeatureEmbedding(nn.Module):
    """``user_vectors(ids)`` and ``item_vectors(ids)`` for global ids of any shape (0 = padding -> zeros)."""

    def __init__(self, space: FeatureSpace, dim: int, init_std: float = 0.02, use_user_id: bool = True,
                 use_item_id: bool = True, sparse: bool = True) -> None:
        super().__init__()
        if dim <= 0:
            raise ValueError(f"embedding_dim={dim}, expected a positive integer")
        self.dim = dim
        self.use_user_id, self.use_item_id = use_user_id, use_item_id
        # sparse gradients: an optimizer step touches only the rows a batch used (see lit/optim.LazyAdam)
        self.sparse = sparse
        self.user_id = nn.Embedding(space.num_users, dim, padding_idx=0, sparse=sparse)
        self.item_id = nn.Embedding(space.num_items, dim, padding_idx=0, sparse=sparse)
        bag_tables = {s.table for s in (*space.user_slots, *space.item_slots) if s.kind != "categorical"}
        # multi-valued / text slots: EmbeddingBag(mean) gathers and averages in one fused op, skipping padding
        self.tables = nn.ModuleDict({
            _safe(k): (nn.EmbeddingBag(v, dim, mode="mean", padding_idx=0, sparse=sparse) if k in bag_tables
                       else nn.Embedding(v, dim, padding_idx=0, sparse=sparse))
            for k, v in space.tables.items()})
        for emb in (self.user_id, self.item_id, *self.tables.values()):
            init_embedding(emb, init_std)
        self.user_slots: list[Slot] = list(space.user_slots)
        self.item_slots: list[Slot] = list(space.item_slots)
        self.register_buffer("user_features", space.user_features.clone(), persistent=False)
        self.register_buffer("item_features", space.item_features.clone(), persistent=False)
        # frozen text vectors -> item space: one bias-free projection per namespace (``shared/text`` is one
        # tower for all scenarios); bias-free so an item without text (zero vector) gets nothing from it
        self.text_slots: list[Slot] = list(space.text_slots)
        self.text_proj = nn.ModuleDict({_safe(s.table): nn.Linear(s.width, dim, bias=False)
                                        for s in self.text_slots})
        for lin in self.text_proj.values():  # unit-norm text x N(0, std) weights: output std = std, as ids
            nn.init.normal_(lin.weight, 0.0, init_std)
        if self.text_slots:
            self.register_buffer("item_text", space.item_text.clone(), persistent=False)
        # dense (numeric) fields: their scaled values projected into the vector, added like a field's embedding
        self.user_dense_proj = self._dense_projection(space.user_dense, "user_dense")
        self.item_dense_proj = self._dense_projection(space.item_dense, "item_dense")

    def _dense_projection(self, values: torch.Tensor | None, name: str) -> nn.Linear | None:
        if values is None or values.shape[1] == 0:
            return None
        self.register_buffer(name, values.float().clone(), persistent=False)
        return nn.Linear(values.shape[1], self.dim, bias=False)

    def _pool(self, feats: torch.Tensor, slots: list[Slot]) -> torch.Tensor | None:
        """Sum over slots of each slot's vector; ``feats`` is ``[N, cols]``. A bag slot is computed only for
        the rows that have a value in it (a slot usually belongs to one scenario's entities)."""
        out = None
        for s in slots:
            table = self.tables[_safe(s.table)]
            if s.kind == "categorical":
                v = table(feats[:, s.start])
                out = v if out is None else out + v
                continue
            idx = feats[:, s.start:s.start + s.width]
            rows = torch.nonzero(idx[:, 0] > 0, as_tuple=True)[0]  # lists are left-aligned: empty iff col 0 is 0
            if out is None:
                out = torch.zeros(len(feats), self.dim, device=feats.device, dtype=table.weight.dtype)
            if rows.numel():
                out = out.index_add(0, rows, table(idx.index_select(0, rows)))
        return out

    def item_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """Vectors for item ids of any shape; each distinct id is computed once (histories repeat items)."""
        uniq, inv = bounded_unique(ids, self.item_id.num_embeddings)
        vecs = self._item_vectors(uniq)
        # index_select's backward is a fast index_add; advanced indexing's is a slow accumulate-index_put
        return vecs.index_select(0, inv.reshape(-1)).reshape(*inv.shape, vecs.shape[-1])

    def _item_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.item_id(ids) if self.use_item_id else None
        pooled = self._pool(self.item_features[ids], self.item_slots)
        if self.item_dense_proj is not None:
            dense = self.item_dense_proj(self.item_dense[ids])
            pooled = dense if pooled is None else pooled + dense
        out = pooled if out is None else (out if pooled is None else out + pooled)
        for s in self.text_slots:
            text = self.text_proj[_safe(s.table)](self.item_text[ids, s.start:s.start + s.width])
            out = text if out is None else out + text
        if out is None:
            raise ValueError("item vectors need an item id embedding or at least one item field")
        return out * (ids > 0).unsqueeze(-1).to(out.dtype)  # padding stays exactly zero

    def user_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.user_id(ids) if self.use_user_id else None
        pooled = self._pool(self.user_features[ids.reshape(-1)], self.user_slots)
        if self.user_dense_proj is not None:
            dense = self.user_dense_proj(self.user_dense[ids.reshape(-1)])
            pooled = dense if pooled is None else pooled + dense
        pooled = None if pooled is None else pooled.reshape(*ids.shape, self.dim)
        if out is None and pooled is None:
            return torch.zeros(*ids.shape, self.dim, device=ids.device, dtype=self.item_id.weight.dtype)
        return pooled if out is None else (out if pooled is None else out + pooled)


def bounded_unique(ids: torch.Tensor, bound: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(ids, return_inverse=True)`` for ids in ``[0, bound)`` by marking instead of sorting
    (O(n + bound); sorting 10^5 ids costs ~100 ms on CPU, marking ~1 ms)."""
    if ids.numel() * 8 < bound:  # few ids over a huge range: sorting is cheaper
        return torch.unique(ids, return_inverse=True)
    flat = ids.reshape(-1)
    mark = torch.zeros(bound, dtype=torch.bool, device=ids.device)
    mark[flat] = True
    uniq = torch.nonzero(mark, as_tuple=True)[0]
    pos = torch.cumsum(mark, 0) - 1
    return uniq, pos[flat].reshape(ids.shape)


def _safe(key: str) -> str:
    """ModuleDict keys cannot contain dots; slashes are fine but keep it uniform."""
    return key.replace(".", "_").replace("/", "__")
