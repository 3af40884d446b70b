"""SASRec on S3-Rec sequences (unirec_lab.seqrec): data protocol, sampling, scoring, metrics, training, CLI.

Everything here runs on small synthetic sequences (no raw data needed) in a few seconds.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch

from unirec_lab.data.scenarios.ids import contains_sorted
from unirec_lab.evaluation.metrics import hr_at_k, mrr, ndcg_at_k
from unirec_lab.seqrec.data import (
    NegativeSampler,
    bucket_batches,
    build_seq_data,
    canonical_dataset,
    left_pad,
    trim,
)
from unirec_lab.seqrec.evaluate import METRICS, candidate_ranks, positive_rank, rank_metrics
from unirec_lab.seqrec.model import SASRec
from unirec_lab.seqrec.train import fit


def toy_sequences(n_users: int = 40, n_items: int = 120, seed: int = 0, min_len: int = 3, max_len: int = 16):
    """Per-user distinct items in a random order; raw ids deliberately sparse (x 3 + 7) and users shuffled."""
    rng = np.random.default_rng(seed)
    seqs = {}
    for u in rng.permutation(n_users):
        n = int(rng.integers(min_len, max_len + 1))
        seqs[int(u) * 5 + 2] = [int(x) * 3 + 7 for x in rng.choice(n_items, n, replace=False)]
    users = np.concatenate([[u] * len(s) for u, s in seqs.items()])
    items = np.concatenate(list(seqs.values()))
    pos = np.concatenate([np.arange(len(s)) for s in seqs.values()])
    return seqs, users, items, pos


def dense_seqs(seqs: dict[int, list[int]]) -> list[list[int]]:
    """The sequences in dense ids (users by raw id, items 1..n by raw id), as SeqData numbers them."""
    item_ids = np.unique(np.concatenate(list(seqs.values())))
    return [list(np.searchsorted(item_ids, seqs[u]) + 1) for u in sorted(seqs)]


@pytest.fixture(scope="module")
def toy():
    seqs, u, i, p = toy_sequences()
    return seqs, build_seq_data(u, i, p, name="toy", max_len=8, eval_negatives=20, eval_seed=5)


def real(row: torch.Tensor) -> list[int]:
    return [int(x) for x in row if x > 0]


# ------------------------------------------------------------------------------------------------ data


def test_left_pad_matches_python():
    flat = np.arange(1, 21)
    starts, ends = np.array([0, 5, 12]), np.array([5, 6, 20])
    out = left_pad(flat, starts, ends, 4)
    assert out.tolist() == [[2, 3, 4, 5], [0, 0, 0, 6], [17, 18, 19, 20]]


def test_splits_targets_and_no_leakage(toy):
    seqs, d = toy
    dense = dense_seqs(seqs)
    assert d.num_users == len(seqs) and d.num_items == len(np.unique(np.concatenate(list(seqs.values()))))
    for u, s in enumerate(dense):
        n, L = len(s), d.max_len
        x, y = real(d.train_input[u]), real(d.train_target[u])
        assert x == s[:n - 3][-L:]                       # input: s_1 .. s_{n-3}, last max_len
        assert y == s[1:n - 2][-L:]                      # target: the next item at every position
        assert len(x) == len(y) == int(d.train_len[u])
        # right-aligned: target column t is the item after input column t
        cols = torch.nonzero(d.train_input[u]).squeeze(1)
        assert torch.equal(cols, torch.nonzero(d.train_target[u]).squeeze(1))
        for c in cols.tolist():
            j = s.index(int(d.train_input[u, c]))
            assert s[j + 1] == int(d.train_target[u, c])
        # val / test items never reach a training input or target (items are distinct per user here)
        assert s[n - 2] not in x + y and s[n - 1] not in x + y
        assert real(d.val_input[u]) == s[:n - 2][-L:] and int(d.val_candidates[u, 0]) == s[n - 2]
        assert real(d.test_input[u]) == s[:n - 1][-L:] and int(d.test_candidates[u, 0]) == s[n - 1]
        assert int(d.val_len[u]) == min(n - 2, L) and int(d.test_len[u]) == min(n - 1, L)


def test_eval_negatives_exclude_user_items_and_are_deterministic(toy):
    seqs, d = toy
    dense = dense_seqs(seqs)
    negs = d.val_candidates[:, 1:]
    assert torch.equal(negs, d.test_candidates[:, 1:])  # S3-Rec: one candidate set per user
    assert negs.shape == (d.num_users, 20)
    for u, s in enumerate(dense):
        row = negs[u].tolist()
        assert len(set(row)) == len(row)                 # distinct
        assert not set(row) & set(s)                     # never an item of the user (any split)
        assert min(row) >= 1 and max(row) <= d.num_items
    _, u, i, p = toy_sequences()
    again = build_seq_data(u, i, p, name="toy", max_len=8, eval_negatives=20, eval_seed=5)
    other = build_seq_data(u, i, p, name="toy", max_len=8, eval_negatives=20, eval_seed=6)
    assert torch.equal(again.val_candidates, d.val_candidates)
    assert not torch.equal(other.val_candidates, d.val_candidates)
    assert torch.equal(other.train_input, d.train_input)  # the eval seed changes the candidates only


def test_short_users_dropped_and_max_users():
    u = np.array([1, 1, 2, 2, 2, 3, 3, 3, 3])
    i = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9])
    p = np.array([0, 1, 0, 1, 2, 0, 1, 2, 3])
    d = build_seq_data(u, i, p, eval_negatives=2)
    assert d.num_users == 2 and d.stats["users_dropped_short"] == 1
    assert d.train_len.tolist() == [0, 1]
    assert build_seq_data(u, i, p, eval_negatives=2, max_users=1).num_users == 1


def test_aliases():
    assert canonical_dataset("Toys") == "Toys_and_Games"
    with pytest.raises(ValueError, match="expected one of"):
        canonical_dataset("Movies")


def test_training_negatives_avoid_training_items(toy):
    seqs, d = toy
    g = torch.Generator().manual_seed(0)
    s = NegativeSampler(d.train_keys, d.num_items, g)
    users = torch.arange(d.num_users)
    neg = s.sample(users, (200,))
    assert neg.min() >= 1 and neg.max() <= d.num_items
    keys = (users[:, None] * (d.num_items + 1) + neg).numpy()
    assert not contains_sorted(d.train_keys.numpy(), keys).any()
    for u, seq in enumerate(dense_seqs(seqs)):  # the training part is s_1 .. s_{n-2}
        assert not set(neg[u].tolist()) & set(seq[:-2])


def test_bucket_batches_cover_every_row_once():
    lengths = torch.randint(1, 50, (1000,))
    g = torch.Generator().manual_seed(0)
    for chunk in (0, 2):
        batches = bucket_batches(lengths, 64, g, chunk)
        allrows = torch.cat(batches)
        assert torch.equal(torch.sort(allrows).values, torch.arange(1000))
        assert max(len(b) for b in batches) == 64
    spread = [int(lengths[b].max() - lengths[b].min()) for b in bucket_batches(lengths, 64, g, 4)]
    assert np.mean(spread) < 15  # bucketed batches hold similar lengths


# ------------------------------------------------------------------------------------------------ model


def test_score_is_dot_product_and_padding_invariant(toy):
    _, d = toy
    torch.manual_seed(0)
    m = SASRec(d.num_items, dim=16, max_len=d.max_len, num_heads=2, dropout=0.3).eval()
    seq, cand = d.test_input[:6], d.test_candidates[:6]
    with torch.no_grad():
        h = m.user_vector(seq)
        expected = torch.einsum("bd,bcd->bc", h, m.item_emb.weight[cand])
        assert torch.allclose(m(seq, cand), expected, atol=1e-6)
        assert torch.allclose(h, m.sequence_outputs(seq)[:, -1], atol=1e-5)
        k = int(d.test_len[:6].max())
        assert torch.allclose(m(trim(seq, k), cand), expected, atol=1e-5)  # cutting shared padding changes nothing
        ranks = candidate_ranks(m, d.test_input, d.test_len, d.test_candidates, batch_size=7)
        assert torch.equal(ranks, positive_rank(m(d.test_input, d.test_candidates)))


def test_loss_is_bce_of_positive_vs_negative(toy):
    _, d = toy
    torch.manual_seed(0)
    m = SASRec(d.num_items, dim=16, max_len=d.max_len, dropout=0.0).eval()
    seq, pos = d.train_input[:5], d.train_target[:5]
    neg = torch.randint(1, d.num_items + 1, pos.shape)
    h = m.sequence_outputs(seq)
    sp = torch.sigmoid((h * m.item_emb.weight[pos]).sum(-1))
    sn = torch.sigmoid((h * m.item_emb.weight[neg]).sum(-1))
    mask = (pos > 0).float()
    manual = (-(torch.log(sp) + torch.log(1 - sn)) * mask).sum() / mask.sum()
    assert torch.allclose(m.loss(seq, pos, neg), manual, atol=1e-6)
    assert torch.allclose(m.loss(seq, pos, neg, reduction="sum"), manual * mask.sum(), atol=1e-4)
    with pytest.raises(ValueError, match="reduction"):
        m.loss(seq, pos, neg, reduction="max")


def test_epoch_loss_norm_weighs_every_target_equally(toy):
    """Length-bucketed batches hold very different numbers of targets; with ``loss_norm=epoch`` one epoch's
    gradient is that of the mean loss over all targets (as with random batches), whatever the batching."""
    _, d = toy
    model_cfg = dict(dim=16, num_layers=1, num_heads=1, dropout=0.0)
    rows = torch.nonzero(d.train_len > 0).squeeze(1)

    def epoch_loss(norm: str, chunk: int) -> torch.Tensor:
        out = fit(d, model_cfg, dict(batch_size=len(rows), lr=1e-9, max_epochs=1, loss_norm=norm,
                                     bucket_chunk=chunk), seed=0)
        return out["val_history"][0]["loss"]

    # one batch holding every user: "epoch" = sum / targets = the plain mean ("batch")
    assert math.isclose(epoch_loss("epoch", 0), epoch_loss("batch", 0), rel_tol=1e-4)
    with pytest.raises(ValueError, match="loss_norm"):
        fit(d, model_cfg, dict(max_epochs=1, loss_norm="user"), seed=0)


def test_tiny_model_overfits_successor_sequences():
    """Each user walks consecutive items (k, k+1, k+2, ...): the next item is a deterministic function of the
    last one, so a small model trained without dropout must rank the held-out next item first."""
    n_items, users, items, pos = 30, [], [], []
    for u in range(60):  # every start item twice, so every successor pair is in some training part
        n, start = 4 + u % 5, u % n_items
        users += [u] * n
        items += [(start + j) % n_items + 1 for j in range(n)]
        pos += list(range(n))
    d = build_seq_data(np.array(users), np.array(items), np.array(pos), name="succ", max_len=8,
                       eval_negatives=10, eval_seed=1)
    out = fit(d, dict(dim=32, num_layers=1, num_heads=1, dropout=0.0, ffn_mult=1),
              dict(batch_size=64, lr=0.01, max_epochs=200, patience=15), seed=0, monitor="hr@1")
    assert out["val"]["hr@1"] == 1.0 and out["selection"]["stop_reason"] == "patience"
    assert out["test"]["hr@1"] >= 0.95  # selected as soon as validation saturates: test is nearly there too


# ------------------------------------------------------------------------------------------------ metrics


def test_rank_metrics_hand_computed():
    r = torch.tensor([0, 2, 7, 15])
    got = rank_metrics(r)
    assert got["hr@1"] == 0.25 and got["hr@5"] == 0.5 and got["hr@10"] == 0.75
    assert math.isclose(got["ndcg@5"], (1 + 1 / math.log2(4)) / 4)
    assert math.isclose(got["ndcg@10"], (1 + 1 / math.log2(4) + 1 / math.log2(9)) / 4)
    assert math.isclose(got["mrr"], (1 + 1 / 3 + 1 / 8 + 1 / 16) / 4)
    # ties count against the model: a constant scorer ranks the positive last
    assert positive_rank(torch.zeros(3, 100)).tolist() == [99, 99, 99]
    assert positive_rank(torch.tensor([[2.0, 3.0, 1.0, 2.0]])).tolist() == [2]


def test_rank_metrics_equal_framework_grouped_metrics():
    rng = np.random.default_rng(1)
    scores = torch.from_numpy(np.round(rng.normal(size=(300, 100)), 1))  # rounding makes ties
    got = rank_metrics(positive_rank(scores))
    # framework layout: one group per user, the positive listed after its negatives (ties by row order)
    z = torch.cat([scores[:, 1:], scores[:, :1]], 1).numpy().reshape(-1)
    y = np.tile(np.r_[np.zeros(99), 1.0], 300)
    g = np.repeat(np.arange(300), 100)
    for k in (1, 5, 10):
        assert math.isclose(got[f"hr@{k}"], hr_at_k(y, z, g, k), abs_tol=1e-12)
    for k in (5, 10):
        assert math.isclose(got[f"ndcg@{k}"], ndcg_at_k(y, z, g, k), abs_tol=1e-12)
    assert math.isclose(got["mrr"], mrr(y, z, g), abs_tol=1e-12)
    assert tuple(got) == METRICS


# ------------------------------------------------------------------------------------------------ CLI


def _fake_raw(tmp_path, seqs):
    folder = tmp_path / "raw" / "ecommerce" / "amazon_s3rec"
    folder.mkdir(parents=True)
    text = "".join(f"{u} {' '.join(map(str, s))}\n" for u, s in sorted(seqs.items()))
    (folder / "Beauty.txt").write_text(text)
    sha = hashlib.sha256(text.encode()).hexdigest()
    (folder / "MANIFEST.tsv").write_text(f"file\tbytes\tsha256\tsource\nBeauty.txt\t{len(text.encode())}\t{sha}\ttest\n")
    return tmp_path / "raw"


def test_hydra_run_writes_result_json(tmp_path):
    from unirec_lab.seqrec.train import run

    from conftest import compose_cfg

    seqs, *_ = toy_sequences(n_users=50, n_items=150)
    raw = _fake_raw(tmp_path, seqs)
    cfg = compose_cfg(tmp_path / "run", [f"raw_dir={raw}", "train.max_epochs=3", "train.patience=2",
                                         "model.dim=16", "data.eval_negatives=20", "seed=3"], config_name="seqrec")
    run(cfg)
    rec = json.loads((tmp_path / "run" / "result.json").read_text())
    assert rec["status"] == "completed" and rec["model"] == "sasrec" and rec["scenarios"] == ["Beauty"]
    assert rec["seed"] == 3 and set(rec["test"]["Beauty"]) == {*METRICS, "rows"}
    assert rec["selection"]["best_epoch"] < rec["selection"]["epochs_run"] <= 3
    assert rec["data"]["Beauty"]["raw_sha256"] and rec["git_sha"] and rec["packages"]["torch"]
    assert rec["train_samples_per_second"] > 0 and (tmp_path / "run" / "best.pt").is_file()
    assert len(rec["val_history"]) == rec["selection"]["epochs_run"]
