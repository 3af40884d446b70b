"""The shared backbone: user and item vectors in one space and their interaction features.

user = user id + user fields + history encoder(history item vectors); item = item id + item fields.
The interaction ``[u, i, u*i, <u,i>]`` (the dot product is the collaborative-filtering score) feeds a shared
trunk MLP whose output every scenario head reads. With ``scenario_feature=True`` (the scenario-as-feature
baseline) an embedding of the row's scenario index is concatenated to the trunk input as one more feature.
With ``feedback_embedding=True`` a history entry is item ⊕ action: an embedding of the user's feedback on it
(``history_action``: negative / positive) is summed with the item vector, so an encoder can tell a wrong answer
or a skip from a correct answer or a click. ``feedback_cross=True`` adds a separate linear map of the item
vector per feedback value (``W_action item``), as DKT's one-hot of (skill, correctness) does: a correct and a wrong
answer to the same skill become unrelated inputs rather than one item vector shifted by one action vector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from unirec_lab.features import FeatureSpace
from unirec_lab.models.embedding import FeatureEmbedding
from unirec_lab.models.mlp import mlp

Batch = dict[str, torch.Tensor]


class PairFeatures(dict):
    """The backbone outputs of ``b x C`` (user, candidate) pairs, rows user-major. ``user``, ``item`` and ``dot``
    are materialised only when a head reads them (most heads read ``h`` alone)."""

    def __init__(self, feats: dict[str, torch.Tensor], b: int, c: int, user: torch.Tensor | None = None,
                 item: torch.Tensor | None = None) -> None:
        super().__init__(feats)
        self.b, self.c = b, c
        self._user, self._item = user, item

    def __missing__(self, key: str) -> torch.Tensor:
        if self._user is None or self._item is None or key not in ("user", "item", "dot"):
            raise KeyError(key)
        d = self._user.shape[-1]
        item = self._item.expand(self.b, self.c, d)
        if key == "dot":
            value = (item * self._user.unsqueeze(1)).sum(-1).reshape(-1)
        elif key == "item":
            value = item.reshape(-1, d)
        else:
            value = self._user.unsqueeze(1).expand(self.b, self.c, d).reshape(-1, d)
        self[key] = value
        return value


class SharedBackbone(nn.Module):
    """Embeds a batch and returns ``{"h": trunk output, "user", "item", "dot"}``.

    ``feature_dims`` gives the width of every output besides ``h`` (``out_dim``), for heads that read them.
    """

    def __init__(self, space: FeatureSpace, history_encoder: Callable[[int], nn.Module],
                 embedding_dim: int = 32, trunk_dims: Sequence[int] = (128, 64), dropout: float = 0.0,
                 init_std: float = 0.02, scenario_feature: bool = False, sparse_embeddings: bool = True,
                 feedback_embedding: bool = False, user_id_embedding: bool = True,
                 item_id_embedding: bool = True, feedback_cross: bool = False) -> None:
        """``user_id_embedding`` / ``item_id_embedding`` off: users / items are their fields only (e.g. knowledge
        tracing on unseen students, where a student id can only memorise the training students)."""
        super().__init__()
        self.embedding = FeatureEmbedding(space, embedding_dim, init_std=init_std, sparse=sparse_embeddings,
                                          use_user_id=user_id_embedding, use_item_id=item_id_embedding)
        self.action_embedding: nn.Embedding | None = None
        if feedback_embedding:  # 0 padding, 1 negative, 2 positive (unirec_lab.data.history)
            self.action_embedding = nn.Embedding(3, embedding_dim, padding_idx=0)
            nn.init.normal_(self.action_embedding.weight, 0.0, init_std)
            with torch.no_grad():
                self.action_embedding.weight[0].zero_()
        self.action_maps: nn.Parameter | None = None
        if feedback_cross:
            if not feedback_embedding:
                raise ValueError("backbone.feedback_cross=true needs backbone.feedback_embedding=true (the maps act "
                                 "on item ⊕ feedback history entries)")
            # [negative, positive] maps, zero at the start: training begins from the summed encoding
            self.action_maps = nn.Parameter(torch.zeros(2, embedding_dim, embedding_dim))
        self.history_encoder = history_encoder(embedding_dim)
        self._shared: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None  # shared_sequence_pass
        self.scenario_embedding: nn.Embedding | None = None
        in_dim = 3 * embedding_dim + 1
        if scenario_feature:
            self.scenario_embedding = nn.Embedding(space.num_scenarios, embedding_dim)
            nn.init.normal_(self.scenario_embedding.weight, 0.0, init_std)
            in_dim += embedding_dim
        self.trunk = mlp(in_dim, list(trunk_dims), dropout)
        self.out_dim = list(trunk_dims)[-1] if trunk_dims else in_dim
        self.embedding_dim = embedding_dim
        self.feature_dims = {"user": embedding_dim, "item": embedding_dim, "dot": 1}

    def history_actions(self, batch: Batch) -> torch.Tensor:
        """``[B, K]`` feedback ids of the history entries (a batch without them: every real entry positive)."""
        act = batch.get("history_action")
        if act is None:
            return (batch["history"] > 0).long() * 2
        return act.long()

    def with_actions(self, hist: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """History vectors ``[B, K, d]`` as item ⊕ action (unchanged without ``feedback_embedding``)."""
        if self.action_embedding is None:
            return hist
        out = hist + self.action_embedding(actions)
        if self.action_maps is not None:  # padded entries have zero item vectors, so their map is zero too
            out = out + torch.where((actions == 2).unsqueeze(-1), hist @ self.action_maps[1], hist @ self.action_maps[0])
        return out

    @contextmanager
    def shared_sequence_pass(self, batch: Batch) -> Iterator[None]:
        """One encoder pass for a training step with sequence objectives: inside the block,
        :meth:`sequence_states` of this ``batch`` (the same history tensor) is computed once and reused, and the
        rows' own scores read the user state at its last position (equal to the encoder's ``forward``; tested)
        instead of running the encoder again."""
        self._shared = (batch["history"], self.sequence_states(batch))
        try:
            yield
        finally:
            self._shared = None

    def cached_sequence_states(self, batch: Batch) -> dict[str, torch.Tensor] | None:
        """:meth:`sequence_states` of ``batch`` when a :meth:`shared_sequence_pass` computed it, else ``None``."""
        shared = getattr(self, "_shared", None)
        return shared[1] if shared is not None and shared[0] is batch["history"] else None

    def sequence_states(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Every history position's state (the encoder's ``sequence_outputs`` over item ⊕ action) with what the
        sequence objectives need: ``states`` ``[B, K, d]`` (position ``t`` has seen entries ``<= t``),
        ``items`` (the entries' item vectors, no action), ``ids``, ``actions``, ``mask``, ``profile``."""
        cached = self.cached_sequence_states(batch)
        if cached is not None:
            return cached
        enc = getattr(self.history_encoder, "sequence_outputs", None)
        if enc is None:
            raise ValueError(f"history encoder {type(self.history_encoder).__name__} has no per-position states; "
                             "sequence objectives need backbone=sasrec or backbone=lstm")
        ids = batch["history"]
        actions = self.history_actions(batch)
        items = self.embedding.item_vectors(ids)
        mask = ids > 0
        return {"states": enc(self.with_actions(items, actions), mask), "items": items, "ids": ids,
                "actions": actions, "mask": mask, "profile": self.embedding.user_vectors(batch["user"])}

    def user_item(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        hist_ids = batch["history"]
        seq = self.cached_sequence_states(batch)
        if seq is not None:  # the step's one encoder pass (shared_sequence_pass)
            states = seq["states"]
            last = states[:, -1] if states.shape[1] else torch.zeros_like(seq["profile"])
            return seq["profile"] + last, self.embedding.item_vectors(batch["item"])
        if not self.training and hist_ids.shape[0] > 1:
            return self._user_item_shared_history(batch)
        both = self.embedding.item_vectors(torch.cat([batch["item"].unsqueeze(1), hist_ids], dim=1))
        item, hist = both[:, 0], self.with_actions(both[:, 1:], self.history_actions(batch))
        user = self.embedding.user_vectors(batch["user"]) + self.history_encoder(hist, hist_ids > 0, item)
        return user, item

    def _user_item_shared_history(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Evaluation shortcut, exact: consecutive rows with the same user and history (a candidate list, an
        impression) share one user-side computation. Ranking protocols (1 vs 99) are ~100x cheaper."""
        user_ids, hist_ids = batch["user"], batch["history"]
        actions = self.history_actions(batch)
        new = torch.ones(len(user_ids), dtype=torch.bool, device=user_ids.device)
        new[1:] = ((user_ids[1:] != user_ids[:-1]) | (hist_ids[1:] != hist_ids[:-1]).any(1)
                   | (actions[1:] != actions[:-1]).any(1))
        rep = torch.nonzero(new, as_tuple=True)[0]
        run = torch.cumsum(new, 0) - 1
        item = self.embedding.item_vectors(batch["item"])
        hist_rep = hist_ids.index_select(0, rep)
        hist = self.with_actions(self.embedding.item_vectors(hist_rep), actions.index_select(0, rep))
        static = self.embedding.user_vectors(user_ids.index_select(0, rep))
        if getattr(self.history_encoder, "target_dependent", True):  # unknown encoders: assume they do
            enc = self.history_encoder(hist.index_select(0, run), hist_rep.index_select(0, run) > 0, item)
            return static.index_select(0, run) + enc, item
        enc = self.history_encoder(hist, hist_rep > 0, item.index_select(0, rep))
        return (static + enc).index_select(0, run), item

    def embed(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The embedded inputs, before any interaction: ``profile`` (user id + user fields) ``[B, d]``,
        ``history`` ``[B, L, d]`` with ``history_mask``, and the candidate ``item`` ``[B, d]``. With
        :meth:`from_vectors` this is the model as a function of vectors (what score explanations need)."""
        hist_ids = batch["history"]
        return {"profile": self.embedding.user_vectors(batch["user"]),
                "history": self.with_actions(self.embedding.item_vectors(hist_ids), self.history_actions(batch)),
                "history_mask": hist_ids > 0,
                "item": self.embedding.item_vectors(batch["item"])}

    def from_vectors(self, vecs: dict[str, torch.Tensor], scenario: torch.Tensor) -> dict[str, torch.Tensor]:
        """``forward`` from :meth:`embed`'s vectors (equal to ``forward(batch)``; tested)."""
        item = vecs["item"]
        user = vecs["profile"] + self.history_encoder(vecs["history"], vecs["history_mask"], item)
        return self._interact(user, item, scenario)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        user, item = self.user_item(batch)
        return self._interact(user, item, batch["scenario"])

    def interact(self, user: torch.Tensor, item: torch.Tensor, scenario: torch.Tensor) -> dict[str, torch.Tensor]:
        """The trunk on given user / item vectors (sequence objectives score history positions with it)."""
        return self._interact(user, item, scenario)

    def _interact(self, user: torch.Tensor, item: torch.Tensor, scenario: torch.Tensor) -> dict[str, torch.Tensor]:
        dot = (user * item).sum(-1, keepdim=True)
        parts = [user, item, user * item, dot]
        if self.scenario_embedding is not None:
            parts.append(self.scenario_embedding(scenario))
        h = self.trunk(torch.cat(parts, dim=-1))
        return {"h": h, "user": user, "item": item, "dot": dot.squeeze(-1)}

    # -- catalogue scoring (full ranking, serving): item side once, user side once per user ----------------
    def user_side(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-row user state for :meth:`pair_features`: the user vector, or (target-dependent history encoder)
        the profile and embedded history that each candidate attends over."""
        hist_ids = batch["history"]
        static = self.embedding.user_vectors(batch["user"])
        hist = self.with_actions(self.embedding.item_vectors(hist_ids), self.history_actions(batch))
        mask = hist_ids > 0
        if getattr(self.history_encoder, "target_dependent", True):
            return {"profile": static, "history": hist, "history_mask": mask, "scenario": batch["scenario"]}
        user = static + self.history_encoder(hist, mask, torch.zeros_like(static))  # the target is ignored
        return {"user": user, "scenario": batch["scenario"]}

    def item_side(self, items: torch.Tensor) -> dict[str, torch.Tensor]:
        """Item state (``[N, d]`` vectors) for :meth:`pair_features`, computed once per catalogue."""
        return {"item": self.embedding.item_vectors(items)}

    def pair_features(self, user: dict[str, torch.Tensor], item: dict[str, torch.Tensor]) -> PairFeatures:
        """``forward``'s outputs for every (user row, candidate) pair, rows flattened user-major: ``item["item"]``
        is ``[C, d]`` (the same candidates for every user) or ``[b, C, d]`` (per-user candidates).

        Exact and cheaper than ``forward`` on repeated rows: the trunk's first layer on ``[u, i, u*i, <u,i>]``
        is linear in ``i`` for a fixed ``u``, so it is folded into one ``[H, d]`` matrix per user and the pairs
        cost one ``[C, d] x [d, H]`` matmul instead of building and multiplying the ``3d + 1`` wide input."""
        it = item["item"]
        b = len(user["scenario"])
        c = it.shape[-2]
        first = self.trunk[0] if len(self.trunk) else None
        if "user" not in user or not isinstance(first, nn.Linear):
            # a target-dependent history (one encoder pass per pair, as forward does) or no trunk layer to
            # fold: the pair rows are built explicitly
            its = it.expand(b, c, it.shape[-1]).reshape(b * c, -1)
            rep = torch.arange(b, device=its.device).repeat_interleave(c)
            if "user" in user:
                u = user["user"].index_select(0, rep)
            else:
                u = user["profile"].index_select(0, rep) + self.history_encoder(
                    user["history"].index_select(0, rep), user["history_mask"].index_select(0, rep), its)
            return PairFeatures(self._interact(u, its, user["scenario"].index_select(0, rep)), b, c)
        u = user["user"]
        a, bias = self.fold_first_layer(user)
        d = self.embedding_dim
        h = torch.baddbmm(bias.unsqueeze(1), it.expand(b, c, d), a.transpose(1, 2)).reshape(b * c, -1)  # [bC, H]
        for layer in self.trunk[1:]:  # the rest of the trunk; ReLU in place on these fresh tensors
            h = torch.relu_(h) if isinstance(layer, nn.ReLU) else layer(h)
        return PairFeatures({"h": h}, b, c, user=u, item=it)

    def fold_first_layer(self, user: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A [b, H, d], c [b, H])`` with the first trunk layer's output ``= A_u i + c_u`` for item vector
        ``i`` (a target-independent user state with a linear first trunk layer; :meth:`pair_features`)."""
        u, d, first = user["user"], self.embedding_dim, self.trunk[0]
        w = first.weight
        # z = W_u u + W_i i + W_ui (u*i) + w_dot <u,i> (+ W_s e_s) + bias = A_u i + c_u
        a = w[:, d:2 * d] + (w[:, 2 * d:3 * d] + w[:, 3 * d:3 * d + 1]) * u.unsqueeze(1)  # [b, H, d]
        bias = u @ w[:, :d].T + first.bias
        if self.scenario_embedding is not None:
            bias = bias + self.scenario_embedding(user["scenario"]) @ w[:, 3 * d + 1:].T
        return a, bias

    def trunk_chain(self) -> list[nn.Module] | None:
        """The trunk after its first layer when :meth:`fold_first_layer` applies, else ``None``."""
        return list(self.trunk[1:]) if len(self.trunk) and isinstance(self.trunk[0], nn.Linear) else None

    def describe(self) -> str:
        enc = type(self.history_encoder).__name__
        sc = ", scenario feature" if self.scenario_embedding is not None else ""
        sc += ", item ⊕ feedback history" if self.action_embedding is not None else ""
        return f"{type(self).__name__}(d={self.embedding_dim}, history={enc}{sc})"
