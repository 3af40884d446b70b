"""History encoders: turn the embedded behaviour history into one user-interest vector.

Interface: ``forward(hist [B, K, d], mask [B, K] (True = real item), target [B, d]) -> [B, d]``. Histories
are left-padded (the most recent item is at position ``K - 1``); padded positions are zero vectors.

- :class:`MeanPooling`: masked mean.
- :class:`TargetAttention`: DIN-style attention of the candidate item over the history.
- :class:`CausalSelfAttention`: SASRec-style causal transformer; the output is the last position's state.
- :class:`RecurrentEncoder`: DKT-style LSTM (Piech et al., NeurIPS 2015) over the history; the last state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def by_history_span(hist: torch.Tensor, mask: torch.Tensor, target: torch.Tensor | None,
                    fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor],
                    sequence: bool = False) -> torch.Tensor:
    """``fn(hist, mask, target) -> [B, d]`` computed on rows grouped by history span, each group cut to its span.

    A row's *span* is ``K - (index of its first real position)``. Rows are bucketed by span (upper edges 1, 2,
    4, 8, ... K) and each bucket runs ``fn`` on its last ``edge`` positions only, so left padding costs
    nothing; rows with an empty history get zeros without running ``fn``. Exact for any encoder whose output
    for a row does not change when leading all-padding positions are removed (target attention; the causal
    encoder with right-aligned positions). The loop is over buckets (at most ``log2 K + 2``), never rows.
    ``sequence=True``: ``fn`` returns per-position states ``[n, edge, d]`` (zeros at padding), placed back at the
    last ``edge`` positions of a ``[B, K, d]`` zero tensor.
    """
    B, K, d = hist.shape
    has = mask.any(1)
    first = torch.where(has, mask.to(torch.int8).argmax(1), torch.full_like(has, K, dtype=torch.long))
    span = K - first
    edges = [1]
    while edges[-1] < K:
        edges.append(min(2 * edges[-1], K))
    bucket = torch.bucketize(span, torch.tensor([0, *edges], device=span.device))  # 0 = empty history
    order = torch.argsort(bucket, stable=True)
    sizes = torch.bincount(bucket, minlength=len(edges) + 1).tolist()
    rows_out, vals_out = [], []
    start = sizes[0]
    for b, n in enumerate(sizes[1:]):
        if n:
            rows = order[start:start + n]
            e = edges[b]
            t = None if target is None else target.index_select(0, rows)
            vals_out.append(fn(hist.index_select(0, rows)[:, K - e:], mask.index_select(0, rows)[:, K - e:], t))
            rows_out.append(rows)
        start += n
    if sequence:
        out = hist.new_zeros(B, K, d)
        if not rows_out:
            return out
        vals = torch.cat([F.pad(v, (0, 0, K - v.shape[1], 0)) for v in vals_out])
        return out.index_copy(0, torch.cat(rows_out), vals)
    out = hist.new_zeros(B, d)
    if not rows_out:
        return out
    return out.index_copy(0, torch.cat(rows_out), torch.cat(vals_out))


class MeanPooling(nn.Module):
    """Masked mean of the history item vectors (zeros for an empty history)."""

    target_dependent = False  # does the output depend on the candidate item? (eval dedupe in the backbone)

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, hist: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(hist.dtype)
        return (hist * m).sum(1) / m.sum(1).clamp(min=1.0)


class TargetAttention(nn.Module):
    """DIN's local activation unit (Zhou et al., KDD 2018).

    ``score_k = MLP([h_k, t, h_k - t, h_k * t])`` for history item ``h_k`` and candidate ``t``; the output is
    ``sum_k w_k h_k``. ``normalise=True`` (default) uses ``w = softmax`` over the real positions, which keeps
    the output on the scale of one item vector whatever the history length. ``normalise=False`` is DIN's
    original unnormalised form, ``w_k = sigmoid(score_k)``, which lets the output's magnitude carry the
    intensity of interest. Either way padded positions get exactly zero weight and an empty history gives a
    zero vector.
    """

    target_dependent = True  # does the output depend on the candidate item? (eval dedupe in the backbone)

    def __init__(self, dim: int, attention_dims: Sequence[int] = (64, 32), normalise: bool = True,
                 bucket_by_span: bool = True) -> None:
        super().__init__()
        self.bucket_by_span = bucket_by_span
        dims = list(attention_dims)
        if any(d <= 0 for d in dims):
            raise ValueError(f"attention_dims must be positive, got {dims}")
        d = dims[0] if dims else 1
        self.first = nn.Linear(4 * dim, d)  # over [h, t, h - t, h * t]
        layers: list[nn.Module] = [nn.PReLU(d)] if dims else []
        for h in dims[1:]:
            layers += [nn.Linear(d, h), nn.PReLU(h)]
            d = h
        if dims:
            layers.append(nn.Linear(d, 1))
        self.rest = nn.Sequential(*layers)
        self.dim = dim
        self.normalise = normalise

    def scores(self, hist: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``[B, K]`` raw scores ``MLP([h, t, h - t, h * t])``.

        The first layer is evaluated without materialising the ``[B, K, 4d]`` concatenation:
        ``W [h, t, h-t, h*t] = (W_h + W_d) h + (W_t - W_d) t + W_p (h*t)``, with ``t``'s term once per row.
        """
        w_h, w_t, w_d, w_p = self.first.weight.split(self.dim, dim=1)
        B, K, d = hist.shape
        flat = hist.reshape(B * K, d)
        z = flat @ (w_h + w_d).t() + (hist * target.unsqueeze(1)).reshape(B * K, d) @ w_p.t()
        z = z.view(B, K, z.shape[-1]) + (target @ (w_t - w_d).t() + self.first.bias).unsqueeze(1)
        return self.rest(z.reshape(B * K, z.shape[-1])).view(B, K)  # PReLU wants its channels in dim 1

    def attention_weights(self, hist: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``[B, K]`` weights; exactly 0 where ``mask`` is False."""
        score = self.scores(hist, target)
        m = mask.to(score.dtype)
        if self.normalise:
            score = score.masked_fill(~mask, torch.finfo(score.dtype).min)
            return torch.softmax(score, dim=-1) * m  # all-padding rows: uniform * 0 = 0
        return torch.sigmoid(score) * m

    def _pool(self, hist: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        w = self.attention_weights(hist, mask, target)
        return torch.bmm(w.unsqueeze(1), hist).squeeze(1)

    def forward(self, hist: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.bucket_by_span and hist.shape[1] > 1:
            return by_history_span(hist, mask, target, self._pool)
        return self._pool(hist, mask, target)


class _Block(nn.Module):
    """Pre-LayerNorm transformer block: ``x + Attn(LN(x))``, then ``x + FFN(LN(x))``."""

    def __init__(self, dim: int, num_heads: int, dropout: float, ffn_mult: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_mult * dim), nn.GELU(), nn.Linear(ffn_mult * dim, dim))
        self.dropout = dropout
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """``[B, K, D] -> [B, K, D]``, or ``[B, 1, D]`` (the last position only) with ``last_only``."""
        B, K, D = x.shape
        H = self.num_heads
        q, k, v = self.qkv(self.ln1(x)).view(B, K, 3, H, D // H).permute(2, 0, 3, 1, 4)
        if last_only:  # keys/values of every position, one query: skips the other K-1 rows' work
            q, attn_mask, x = q[:, :, -1:], attn_mask[:, :, -1:], x[:, -1:]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(B, x.shape[1], D)))
        return x + self.drop(self.ffn(self.ln2(x)))


class CausalSelfAttention(nn.Module):
    """SASRec-style encoder (Kang & McAuley, ICDM 2018): causal self-attention over the history.

    Input = item vectors + learned position embeddings (positions are right-aligned: the most recent item
    always gets position ``max_len - 1``, whatever ``K <= max_len`` is). Each position ``t`` attends to real
    positions ``<= t``; every position may also attend to itself, so a padded query (whose earlier keys are
    all padding) has a non-empty row and no NaN appears. States of padded positions are zeroed after every
    block, so they never leak into real ones. The output at position ``t`` depends on positions ``<= t`` only.

    ``forward`` returns the state at the last position (the most recent item): the user's interest vector.
    ``sequence_outputs`` returns every position's state ``[B, K, d]`` (next-item training à la SASRec).
    Weights are initialised N(0, 0.02) (biases 0, LayerNorm 1/0).
    """

    target_dependent = False  # does the output depend on the candidate item? (eval dedupe in the backbone)

    def __init__(self, dim: int, max_len: int, num_layers: int = 2, num_heads: int = 2, dropout: float = 0.1,
                 ffn_mult: int = 2, init_std: float = 0.02, bucket_by_span: bool = True) -> None:
        super().__init__()
        self.bucket_by_span = bucket_by_span
        if max_len < 0:
            raise ValueError(f"max_len={max_len}, expected >= 0 (usually data.history_len)")
        if num_layers < 1 or num_heads < 1 or dim % num_heads:
            raise ValueError(f"num_layers={num_layers}, num_heads={num_heads}: need >= 1 each and "
                             f"embedding_dim={dim} divisible by num_heads")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout}, expected a value in [0, 1)")
        self.dim, self.max_len = dim, max_len
        self.position = nn.Embedding(max_len, dim)
        self.emb_ln = nn.LayerNorm(dim)
        self.emb_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(dim, num_heads, dropout, ffn_mult) for _ in range(num_layers))
        self.final_ln = nn.LayerNorm(dim)
        self.apply(lambda m: _init(m, init_std))

    def _encode(self, hist: torch.Tensor, mask: torch.Tensor, last_only: bool) -> torch.Tensor:
        B, K, _ = hist.shape
        if K > self.max_len:
            raise ValueError(f"history length {K} > max_len={self.max_len}; raise backbone.history_encoder.max_len")
        m = mask.unsqueeze(-1).to(hist.dtype)
        x = hist + self.position.weight[self.max_len - K:].unsqueeze(0)
        x = self.emb_drop(self.emb_ln(x)) * m
        causal = torch.ones(K, K, dtype=torch.bool, device=hist.device).tril()
        eye = torch.eye(K, dtype=torch.bool, device=hist.device)
        attn_mask = (causal & (mask.unsqueeze(1) | eye)).unsqueeze(1)  # [B, 1, K(query), K(key)]
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            if last_only and i == last:
                m = m[:, -1:]
            x = block(x, attn_mask, last_only=last_only and i == last) * m
        return self.final_ln(x) * m

    def sequence_outputs(self, hist: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, K, d]``: the state after each position (zeros at padded positions)."""
        if self.bucket_by_span and hist.shape[1] > 1:
            return by_history_span(hist, mask, None, lambda h, m, _: self._encode(h, m, last_only=False),
                                   sequence=True)
        return self._encode(hist, mask, last_only=False)

    def forward(self, hist: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``[B, d]``: the state at the last position (equal to ``sequence_outputs(...)[:, -1]``)."""
        if hist.shape[1] == 0:
            return hist.new_zeros(hist.shape[0], hist.shape[2])
        if self.bucket_by_span and hist.shape[1] > 1:
            return by_history_span(hist, mask, None, lambda h, m, _: self._encode(h, m, last_only=True)[:, -1])
        return self._encode(hist, mask, last_only=True)[:, -1]


class RecurrentEncoder(nn.Module):
    """DKT's recurrent knowledge state (Piech et al., NeurIPS 2015): an LSTM over the history entries (with a
    feedback-aware history, item ⊕ correctness, DKT's input), projected back to the embedding width.

    Histories are left-padded; each row's real entries are rotated to the front, so the LSTM starts at the row's
    first real entry (padding never changes a real position's state) and a row's output does not depend on ``K``.
    ``forward`` returns the state after the most recent entry; ``sequence_outputs`` every position's state.
    """

    target_dependent = False  # does the output depend on the candidate item? (eval dedupe in the backbone)

    def __init__(self, dim: int, hidden_dim: int = 128, num_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if hidden_dim < 1 or num_layers < 1:
            raise ValueError(f"hidden_dim={hidden_dim}, num_layers={num_layers}: expected positive integers")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout}, expected a value in [0, 1)")
        self.rnn = nn.LSTM(dim, hidden_dim, num_layers=num_layers, batch_first=True,
                           dropout=dropout if num_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, dim)

    def sequence_outputs(self, hist: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, K, d]``: the state after each position (zeros at padded positions)."""
        B, K, d = hist.shape
        if K == 0:
            return hist
        lens = mask.sum(1)
        shift = (K - lens).unsqueeze(1)
        ar = torch.arange(K, device=hist.device).unsqueeze(0)
        front = (ar + shift) % K  # rotated position j holds original position j + shift
        x = hist.gather(1, front.unsqueeze(-1).expand(B, K, d))
        # padding now trails the real entries, so it only reaches outputs that are masked below (no packing:
        # a packed LSTM's backward zero-fills the whole packed gradient once per step)
        y, _ = self.rnn(x)
        back = (ar - shift) % K
        y = y.gather(1, back.unsqueeze(-1).expand(B, K, y.shape[-1]))
        return self.out(self.drop(y)) * mask.unsqueeze(-1).to(hist.dtype)

    def forward(self, hist: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``[B, d]``: the state after the most recent entry (zeros for an empty history)."""
        if hist.shape[1] == 0:
            return hist.new_zeros(hist.shape[0], hist.shape[2])
        return self.sequence_outputs(hist, mask)[:, -1]


def _init(m: nn.Module, std: float) -> None:
    if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, 0.0, std)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Embedding):
        nn.init.normal_(m.weight, 0.0, std)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
