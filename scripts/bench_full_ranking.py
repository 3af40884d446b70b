"""Full-catalogue ranking: the old path (every user x item pair a forward row) vs the cached catalogue path, and
the exact path's two engines side by side: ``score_pairs`` (the previous one) vs the ReLU chain.

    UNIREC_RAW_DIR=/work/shared/data .venv/bin/python scripts/bench_full_ranking.py \\
        --ckpt unified=/path/best.ckpt --ckpt mf=/path/best.ckpt --users 200 --all --candidates 200 500 \\
        --all-candidates

For each model (``--models``, default unified and mf, built by ``engine.build`` on ``scenario=ecommerce``:
Amazon Beauty, all 12,101 items are candidates), on a seeded sample of ``--users`` test users: seconds of the
old path and of the new exact path (median of ``--repeats``), both extrapolated to all users, and the largest
metric difference between them; then the exact path without (``chain=False``, the previous engine) and with
the ReLU chain (``evaluation/relu_chain.py``) on the same users, one after the other in this run, each with its
wall and CPU seconds (the CPU seconds of all users are what 2 idle cores would need in wall time x 2).
``--all`` also times the new path on every test user (once). ``--candidates``
times the optional retrieval stage and measures what it costs against the exact top-K on the sample: the
share of exact top-K items kept and the metric differences (``--all-candidates``: also timed on all users).
Timings depend on the load of the shared machine: the 1-minute load average is sampled before and after each
measurement and printed with it, with the CPU seconds the process used (about the wall time on idle cores times
the threads that were busy).
A checkpoint (``--ckpt name=path``, a Lightning checkpoint of that model) gives trained weights; without one
the weights are the seeded initialisation (the times are the same; only recall numbers need training).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
warnings.filterwarnings("ignore")
KS = (10, 20)


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def build(model: str, ckpt: str | None):
    """``(datamodule, model)`` for ``scenario=ecommerce model=<model>``, with the checkpoint's weights if any."""
    from unirec_lab.engine.build import build

    from conftest import compose_cfg

    cfg = compose_cfg(Path(tempfile.mkdtemp()) / "run", ["scenario=ecommerce", f"model={model}"])
    cfg.paths.cache_dir = os.environ.get("UNIREC_CACHE_DIR", str(ROOT / ".cache"))
    torch.manual_seed(0)
    dm, net = build(cfg)
    if ckpt:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
        net.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    return dm, net.eval()


def timed(common: tuple, repeats: int, **kwargs) -> tuple[dict, float, str]:
    """``(full_ranking_metrics(*common, ks=KS, **kwargs), median wall seconds, 'load before->after, median
    CPU seconds')``: on a shared machine the CPU seconds of this process say more than the wall time."""
    from unirec_lab.evaluation.full_ranking import full_ranking_metrics

    times, cpu, before = [], [], load()
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = full_ranking_metrics(*common, ks=KS, **kwargs)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return out, statistics.median(times), f"{before}->{load()}, cpu {statistics.median(cpu):.1f}s"


def kept_share(dm, net, users: int, candidates: int, seed: int) -> float:
    """Share of the exact top-20 items (earlier positives excluded) that the retrieval stage keeps."""
    from unirec_lab.evaluation.catalogue import CatalogueRanker
    from unirec_lab.evaluation.full_ranking import PairIndex, _first_positive_rows

    s_idx = list(dm.scenario_names).index("ecommerce")
    te = dm.splits["test"]
    first = _first_positive_rows(te, s_idx)
    pick = torch.randperm(len(first), generator=torch.Generator().manual_seed(seed))[:users]
    rows = {k: v[first[pick]] for k, v in te.items()}
    items = torch.nonzero(dm.space.item_scenario == s_idx, as_tuple=True)[0]
    seen = [dm.splits[s] for s in ("train", "val")]
    seen_u = torch.cat([t["user"][(t["scenario"] == s_idx) & (t["label"] > 0.5)] for t in seen])
    seen_i = torch.cat([t["item"][(t["scenario"] == s_idx) & (t["label"] > 0.5)] for t in seen])
    exclude = PairIndex(seen_u, seen_i, int(items.min()), len(items)).matrix(rows["user"])
    k = max(KS)
    exact = CatalogueRanker(net, items).topk(rows, k, exclude)[1]
    approx = CatalogueRanker(net, items, candidates=candidates, seed=seed).topk(rows, k, exclude)[1]
    hit = (exact.unsqueeze(2) == approx.unsqueeze(1)).any(2)
    return float(hit.double().mean())


def _cpu_of(label: str) -> float:
    """The median CPU seconds out of :func:`timed`'s label."""
    return float(label.rsplit("cpu ", 1)[1].rstrip("s"))


def diff(a: dict, b: dict) -> float:
    return max(abs(a[k] - b[k]) for k in a if "@" in k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["unified", "mf"])
    ap.add_argument("--ckpt", action="append", default=[], help="name=path of a Lightning checkpoint")
    ap.add_argument("--users", type=int, default=200, help="sampled test users for old vs new")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--all", action="store_true", help="also time the new exact path on all test users (once)")
    ap.add_argument("--all-candidates", action="store_true", help="also time each --candidates on all users (once)")
    ap.add_argument("--candidates", type=int, nargs="*", default=[], help="retrieval stage sizes to measure")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ckpts = dict(c.split("=", 1) for c in args.ckpt)
    print(f"threads {args.threads}, cpus {os.cpu_count()}, load = 1-min load average before->after")
    for name in args.models:
        dm, net = build(name, ckpts.get(name))
        common = (net, dm.splits, dm.scenario_names, "ecommerce", dm.space.item_scenario)
        n_all = len(torch.unique(dm.splits["test"]["user"][(dm.splits["test"]["label"] > 0.5)]))
        old, t_old, l_old = timed(common, args.repeats, max_users=args.users, cached=False)
        new, t_new, l_new = timed(common, args.repeats, max_users=args.users)
        users = old["users"]
        print(f"{name} ({'trained' if name in ckpts else 'untrained'}, {users} of {n_all} users, "
              f"{old['candidates']} items): old {t_old:.2f}s (all users ~{t_old * n_all / users:.0f}s, load "
              f"{l_old}) | new exact {t_new:.2f}s (all users ~{t_new * n_all / users:.1f}s, load {l_new}) | "
              f"{t_old / t_new:.1f}x | max metric diff {diff(old, new):.1e} | recall@20 {new['recall@20']:.4f}")
        if name != "mf":  # MF is one addmm: no chain
            pre, t_pre, l_pre = timed(common, args.repeats, max_users=args.users, chain=False)
            cpu_pre = _cpu_of(l_pre)
            print(f"  exact, {users} users: previous engine (score_pairs) {t_pre:.2f}s (load {l_pre}; all users "
                  f"~{t_pre * n_all / users:.0f}s wall, ~{cpu_pre * n_all / users:.0f} CPU-s) | ReLU chain "
                  f"{t_new:.2f}s (load {l_new}; all ~{t_new * n_all / users:.0f}s wall, "
                  f"~{_cpu_of(l_new) * n_all / users:.0f} CPU-s) | {t_pre / t_new:.2f}x wall, "
                  f"{cpu_pre / max(_cpu_of(l_new), 1e-9):.2f}x CPU | max metric diff {diff(pre, new):.1e}", flush=True)
        if args.all:
            full, t_full, l_full = timed(common, 1)
            print(f"  new exact, all {full['users']} users measured: {t_full:.1f}s (load {l_full}) "
                  f"recall@20 {full['recall@20']:.4f} ndcg@20 {full['ndcg@20']:.4f}")
        for c in args.candidates:
            part, t_part, l_part = timed(common, args.repeats, max_users=args.users, candidates=c)
            kept = kept_share(dm, net, args.users, c, seed=1)
            line = (f"  retrieval top-{c} + exact re-rank, {users} users: {t_part:.2f}s (all ~"
                    f"{t_part * n_all / users:.1f}s, load {l_part}) | exact top-20 kept {kept:.4f} | "
                    f"max metric diff vs exact {diff(new, part):.1e} (recall@20 {part['recall@20']:.4f})")
            if args.all_candidates:
                full_c, t_fc, l_fc = timed(common, 1, candidates=c)
                line += (f" | all users measured {t_fc:.1f}s (load {l_fc}), recall@20 {full_c['recall@20']:.4f}"
                         f" ndcg@20 {full_c['ndcg@20']:.4f}")
            print(line, flush=True)


if __name__ == "__main__":
    main()
