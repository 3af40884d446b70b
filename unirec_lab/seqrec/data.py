"""S3-Rec Amazon sequences as tensors for SASRec: training prefixes, next-item targets, 1-vs-99 eval candidates.

Protocol (S3-Rec, CIKM 2020, ``datasets.py`` / ``data/generate_test.py``; same as SASRec's leave-one-out):

- a user's chronological items ``s_1 .. s_n``: ``s_n`` is the test item, ``s_{n-1}`` the validation item,
  ``s_1 .. s_{n-2}`` the training part;
- training sequence: input ``s_1 .. s_{n-3}``, target at each position = the next item ``s_2 .. s_{n-2}``
  (the last ``max_len`` positions, left-padded with 0); the validation and test items never appear in it;
- validation: input ``s_1 .. s_{n-2}`` (last ``max_len``), candidates ``[s_{n-1}, 99 negatives]``;
  test: input ``s_1 .. s_{n-1}``, candidates ``[s_n, the same 99 negatives]``; the negatives are drawn once per
  user, uniformly and without repetition from the items that user never interacted with (any split), from a
  fixed seed (``eval_seed`` + the dataset name), so every run and every training seed ranks the same candidates;
- training negatives (:class:`NegativeSampler`): one per target position, uniform over the items outside the
  user's training part, redrawn every batch.

Item ids are dense ``1..num_items`` (0 = padding); users are dense ``0..U-1`` in raw-id order. Everything is
built with numpy over flat arrays (no per-user Python loop) and held as tensors; batches are index slices.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unirec_lab.data.scenarios.amazon_s3rec import DATASETS, AmazonS3RecScenario, read_sequences
from unirec_lab.data.scenarios.base import RawDataset
from unirec_lab.data.scenarios.ids import sorted_unique
from unirec_lab.data.scenarios.negatives import sample_negatives
from unirec_lab.data.scenarios.raw import RawDataError, default_raw_dir

ALIASES = {"Toys": "Toys_and_Games", "Sports": "Sports_and_Outdoors"}
MIN_LEN = 3  # one training item + validation + test


def canonical_dataset(name: str) -> str:
    """``Beauty`` / ``Toys_and_Games`` (alias ``Toys``) / ``Sports_and_Outdoors`` (alias ``Sports``)."""
    name = ALIASES.get(name, name)
    if name not in DATASETS:
        raise ValueError(f"dataset={name!r}, expected one of {DATASETS} (aliases {sorted(ALIASES)})")
    return name


@dataclass
class SeqData:
    """One dataset, tensorised. ``[U, L]`` matrices are left-padded (most recent item in column ``L - 1``)."""

    name: str
    num_items: int                 # item ids 1..num_items; 0 = padding
    max_len: int
    train_input: torch.Tensor      # [U, L] s_1..s_{n-3}
    train_target: torch.Tensor     # [U, L] s_2..s_{n-2} (0 where no target)
    train_len: torch.Tensor        # [U] real positions in train_input
    val_input: torch.Tensor        # [U, L] s_1..s_{n-2}
    val_len: torch.Tensor
    test_input: torch.Tensor       # [U, L] s_1..s_{n-1}
    test_len: torch.Tensor
    val_candidates: torch.Tensor   # [U, 1 + neg] column 0 = s_{n-1}
    test_candidates: torch.Tensor  # [U, 1 + neg] column 0 = s_n, same negatives as validation
    train_keys: torch.Tensor       # sorted user * (num_items + 1) + item over each user's training part (+ item 0)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def num_users(self) -> int:
        return int(self.train_input.shape[0])

    @property
    def num_train_targets(self) -> int:
        return int(self.train_len.sum())


def left_pad(flat: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int) -> np.ndarray:
    """Rows ``flat[starts[u]:ends[u]]`` cut to their last ``max_len`` values, left-padded with 0: ``[U, max_len]``."""
    idx = ends[:, None] - max_len + np.arange(max_len)[None, :]
    valid = idx >= starts[:, None]
    return np.where(valid, flat[np.clip(idx, 0, max(len(flat) - 1, 0))], 0).astype(np.int64)


def build_seq_data(raw_user: np.ndarray, raw_item: np.ndarray, order: np.ndarray, name: str = "data",
                   max_len: int = 50, eval_negatives: int = 99, eval_seed: int = 12345,
                   max_users: int | None = None) -> SeqData:
    """Tensors from per-interaction arrays (user, item, order key within the user). See the module docstring."""
    if max_len < 1 or eval_negatives < 1:
        raise ValueError(f"max_len={max_len}, eval_negatives={eval_negatives}: both must be >= 1")
    raw_user, raw_item, order = (np.asarray(a, dtype=np.int64) for a in (raw_user, raw_item, order))
    user_ids, u = np.unique(raw_user, return_inverse=True)
    item_ids, i = np.unique(raw_item, return_inverse=True)
    u, i = u.reshape(-1).astype(np.int64), i.reshape(-1).astype(np.int64) + 1  # items 1..n
    n_items = len(item_ids)
    srt = np.lexsort((order, u))
    u, flat = u[srt], i[srt]
    lengths = np.bincount(u, minlength=len(user_ids))
    keep = lengths >= MIN_LEN
    dropped = int((~keep).sum())
    if max_users is not None:
        keep &= np.cumsum(keep) <= int(max_users)
    starts_all = np.cumsum(lengths) - lengths
    starts, lengths = starts_all[keep], lengths[keep]
    n_users = len(starts)
    if n_users == 0:
        raise RawDataError(f"{name}: no user has >= {MIN_LEN} interactions")
    if eval_negatives > n_items - 2:
        raise RawDataError(f"{name}: eval_negatives={eval_negatives} but only {n_items} items exist")
    ends = starts + lengths

    train_input = left_pad(flat, starts, ends - 3, max_len)
    train_target = left_pad(flat, starts + 1, ends - 2, max_len)
    val_input = left_pad(flat, starts, ends - 2, max_len)
    test_input = left_pad(flat, starts, ends - 1, max_len)

    # every (user, item) pair of the kept users, over all splits; item 0 counts as seen so it is never drawn
    owner = np.repeat(np.arange(n_users), lengths)
    rows = _ranges(starts, ends)
    all_keys = sorted_unique(np.concatenate([owner * (n_items + 1) + flat[rows],
                                             np.arange(n_users) * (n_items + 1)]))
    rng = np.random.default_rng([int(eval_seed), zlib.crc32(name.encode())])
    negs = sample_negatives(np.arange(n_users), eval_negatives, n_items + 1, all_keys, rng, distinct=True)
    val_cand = np.concatenate([flat[ends - 2][:, None], negs], axis=1)
    test_cand = np.concatenate([flat[ends - 1][:, None], negs], axis=1)

    rank = rows - np.repeat(starts, lengths)
    in_train = rank < np.repeat(lengths - 2, lengths)
    train_keys = sorted_unique(np.concatenate([owner[in_train] * (n_items + 1) + flat[rows][in_train],
                                               np.arange(n_users) * (n_items + 1)]))
    t = torch.from_numpy
    stats = {"dataset": name, "users": n_users, "items": n_items, "interactions": int(lengths.sum()),
             "users_dropped_short": dropped, "max_len": max_len, "eval_negatives": eval_negatives,
             "eval_seed": int(eval_seed), "train_targets": int(np.minimum(lengths - 3, max_len).sum()),
             "mean_length": round(float(lengths.mean()), 3)}
    return SeqData(
        name=name, num_items=n_items, max_len=max_len,
        train_input=t(train_input), train_target=t(train_target),
        train_len=t(np.minimum(lengths - 3, max_len)),
        val_input=t(val_input), val_len=t(np.minimum(lengths - 2, max_len)),
        test_input=t(test_input), test_len=t(np.minimum(lengths - 1, max_len)),
        val_candidates=t(val_cand), test_candidates=t(test_cand), train_keys=t(train_keys), stats=stats)


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, e)`` for each pair, vectorised."""
    lens = ends - starts
    return np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(starts, lens)


def load_s3rec(dataset: str, raw_dir: str | Path | None = None, max_len: int = 50, eval_negatives: int = 99,
               eval_seed: int = 12345, max_users: int | None = None, verify: bool = True) -> SeqData:
    """Read ``<raw>/ecommerce/amazon_s3rec/<dataset>.txt`` (sha256 checked against MANIFEST.tsv) and tensorise it.

    ``raw_dir`` defaults to :func:`~unirec_lab.data.scenarios.raw.default_raw_dir` (``$UNIREC_RAW_DIR``, else
    ``<repo>/../shared/data``). ``max_users`` keeps the first users only (smoke tests).
    """
    name = canonical_dataset(dataset)
    raw = RawDataset(Path(raw_dir) if raw_dir else default_raw_dir(), AmazonS3RecScenario.dataset, verify=verify)
    fname = f"{name}.txt"
    sha = raw.sha256(fname)
    user, item, pos = read_sequences(raw.file(fname))
    data = build_seq_data(user, item, pos, name=name, max_len=max_len, eval_negatives=eval_negatives,
                          eval_seed=eval_seed, max_users=max_users)
    data.stats.update({"raw_file": f"{raw.subdir}/{fname}", "raw_sha256": sha, "raw_dir": str(raw.root),
                       "max_users": max_users})
    return data


# --------------------------------------------------------------------------------------- training helpers


class NegativeSampler:
    """One uniform negative per target: items ``1..num_items`` outside the user's training part.

    Vectorised rejection sampling: draw, look the ``user * (n + 1) + item`` keys up in the sorted training keys
    (``torch.searchsorted``), redraw the collisions only.
    """

    def __init__(self, train_keys: torch.Tensor, num_items: int, generator: torch.Generator,
                 max_rounds: int = 100) -> None:
        self.keys = train_keys.contiguous()
        self.n = int(num_items)
        self.g = generator
        self.max_rounds = max_rounds

    def collides(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users.view(-1, *([1] * (items.dim() - 1))) * (self.n + 1) + items
        idx = torch.searchsorted(self.keys, keys).clamp_(max=len(self.keys) - 1)
        return self.keys[idx] == keys

    def sample(self, users: torch.Tensor, shape_per_user: tuple[int, ...]) -> torch.Tensor:
        out = torch.randint(1, self.n + 1, (len(users), *shape_per_user), generator=self.g)
        for _ in range(self.max_rounds):
            bad = self.collides(users, out)
            k = int(bad.sum())
            if k == 0:
                return out
            out[bad] = torch.randint(1, self.n + 1, (k,), generator=self.g)
        raise RuntimeError(f"could not draw negatives outside the training items in {self.max_rounds} rounds")


def bucket_batches(lengths: torch.Tensor, batch_size: int, generator: torch.Generator,
                   chunk_batches: int = 8) -> list[torch.Tensor]:
    """Shuffled mini-batches of row indices whose lengths are similar, so each batch can be cut to its longest row.

    Rows are permuted at random, cut into chunks of ``chunk_batches * batch_size`` rows, sorted by length inside
    each chunk and split into batches; the batch order is shuffled again. ``chunk_batches=0`` gives plain random
    batches. Every row appears exactly once per epoch.
    """
    n = len(lengths)
    perm = torch.randperm(n, generator=generator)
    if chunk_batches > 0:
        chunk = chunk_batches * batch_size
        parts = []
        for s in range(0, n, chunk):  # a handful of chunks per epoch, not per row
            p = perm[s:s + chunk]
            parts.append(p[torch.argsort(lengths[p], stable=True)])
        perm = torch.cat(parts)
    batches = list(torch.split(perm, batch_size))
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[j] for j in order]


def length_sorted_batches(lengths: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Deterministic evaluation batches: rows sorted by length, then split."""
    return list(torch.split(torch.argsort(lengths, stable=True), batch_size))


def trim(x: torch.Tensor, length: int) -> torch.Tensor:
    """Keep the last ``length`` columns of a left-padded ``[B, L]`` matrix (at least one)."""
    return x[:, x.shape[1] - max(int(length), 1):]

