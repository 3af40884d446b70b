"""Side by side with Scenario-Wise Rec's own trainer: the same rows, split, features and model (SharedBottom).

    python scripts/bench_swr.py --swr-python /tmp/swrvenv/bin/python --epochs 3
    python scripts/bench_swr.py --model star --epochs 5     # SWR's Star against our STAR head, same split
    python scripts/bench_swr.py --baseline ../main           # also our job on another checkout's code (before)

SWR is never a dependency: it lives in a scratch virtual environment outside the repository, e.g.

    python3 -m venv /tmp/swrvenv && /tmp/swrvenv/bin/pip install --no-deps <a checkout of Scenario-Wise-Rec>
    # plus torch, scikit-learn, pandas, tqdm in that venv (or a .pth file pointing at this project's venv)

Both sides get the prepared ``movielens_swr`` bundles (one pooled split) as the same arrays; both train
``--epochs`` epochs (no early stopping: equal work) on one CPU thread with Adam lr 1e-3 / weight decay 1e-5,
StepLR(2, 0.85), batch 4096, and score the test split. Reported per side: train samples/s, evaluation rows/s
(test forward + per-domain and total AUC / LogLoss), peak resident memory, wall time, total test AUC; and the
machine load, since both share it. Ours is ``unirec-train experiment=swr_movielens`` (validation every epoch
included in its wall time); SWR's is its ``CTRTrainer.train_one_epoch`` / ``evaluate_multi_domain_loss`` on
DataLoaders built as its ``DataGenerator`` does, with ``num_workers=0`` (its default 8 workers would fight the
two cores). The same script is SWR's worker (``--swr-worker``), run by the scratch venv's Python.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = ("movielens_d0", "movielens_d1", "movielens_d2")
SPARSE = ("user_id", "movie_id", "gender", "occupation", "zip", "cate_id")


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" (1/5/15 min, {os.cpu_count()} CPUs)"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------- SWR's side


def swr_worker(data: Path, epochs: int, out: Path, model_name: str, patience: int, scheduler: str) -> None:
    """Runs inside SWR's venv: SWR's model (its script's sizes) and CTRTrainer on the exported arrays."""
    import numpy as np
    import torch
    from scenario_wise_rec.basic.features import DenseFeature, SparseFeature
    from scenario_wise_rec.models import multi_domain as md
    from scenario_wise_rec.trainers import CTRTrainer
    from scenario_wise_rec.utils.data import TorchDataset
    from torch.utils.data import DataLoader

    torch.set_num_threads(1)
    torch.manual_seed(1)
    arr = np.load(data)
    cols = [*SPARSE, "age", "domain_indicator"]
    loaders = {}
    for split in ("train", "val", "test"):
        m = arr["split"] == {"train": 0, "val": 1, "test": 2}[split]
        x = {c: arr[c][m] for c in cols}
        loaders[split] = DataLoader(TorchDataset(x, arr["label"][m]), batch_size=4096, shuffle=split == "train",
                                    num_workers=0)
    model = swr_model(md, model_name, arr, DenseFeature, SparseFeature)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = CTRTrainer(model, "Movielens", optimizer_params={"lr": 1e-3, "weight_decay": 1e-5}, n_epoch=epochs,
                             earlystop_patience=max(patience, 1), device="cpu", model_path=tmp,
                             scheduler_fn=torch.optim.lr_scheduler.StepLR if scheduler == "steplr" else None,
                             scheduler_params={"step_size": 2, "gamma": 0.85})
        train_s, run, best, val_auc = 0.0, 0, epochs - 1, []
        for epoch in range(epochs):  # CTRTrainer.fit's loop, with the training time taken apart from validation
            t0 = time.perf_counter()
            trainer.train_one_epoch(loaders["train"])
            train_s += time.perf_counter() - t0
            run = epoch + 1
            if trainer.scheduler is not None:
                trainer.scheduler.step()
            if patience:
                auc, _ = trainer.evaluate(trainer.model, loaders["val"])
                val_auc.append(auc)
                print(f"SWR epoch {epoch}: val AUC {auc:.4f} ({train_s:.0f} s training so far)", flush=True)
                if auc > trainer.early_stopper.best_auc:
                    best = epoch
                if trainer.early_stopper.stop_training(auc, trainer.model.state_dict()):
                    trainer.model.load_state_dict(trainer.early_stopper.best_weights)
                    break
        t1 = time.perf_counter()
        _, dom_auc, logloss, auc = trainer.evaluate_multi_domain_loss(trainer.model, loaders["test"], 3)
        eval_s = time.perf_counter() - t1
        ceiling = model_only_samples_per_s(trainer, loaders["train"])
    n_train, n_test = len(loaders["train"].dataset), len(loaders["test"].dataset)
    out.write_text(json.dumps({"train_samples_per_s": n_train * run / train_s, "eval_rows_per_s": n_test / eval_s,
                               "peak_mb": peak_mb(), "train_s": train_s, "eval_s": eval_s, "auc": auc,
                               "logloss": logloss, "domain_auc": dom_auc, "epochs_run": run,
                               "best_epoch": best if patience else run - 1, "val_auc": val_auc,
                               "model_only_samples_per_s": ceiling}))


def model_only_samples_per_s(trainer, loader, steps: int = 60) -> float:
    """SWR's training step without its data loading: the same model, loss, ``backward`` and optimizer step as
    ``CTRTrainer.train_one_epoch``, on ``steps`` batches collated beforehand. The most any trainer can get from
    this model on this thread, whatever its data path: the ceiling of an "ours / SWR" training ratio at equal
    model arithmetic."""
    batches = []
    for x, y in loader:
        batches.append((x, y.float()))
        if len(batches) == steps:
            break
    model, opt, loss_fn = trainer.model, trainer.optimizer, trainer.criterion
    model.train()
    for x, y in batches[:5]:  # warm-up
        loss = loss_fn(model(x), y)
        model.zero_grad()
        loss.backward()
        opt.step()
    t0 = time.perf_counter()
    for x, y in batches:
        loss = loss_fn(model(x), y)
        model.zero_grad()
        loss.backward()
        opt.step()
    return sum(len(y) for _, y in batches) / (time.perf_counter() - t0)


def swr_model(md, name: str, arr, DenseFeature, SparseFeature):  # noqa: N803 (SWR's classes, passed in)
    """SWR's model ``name`` with its MovieLens script's sizes and feature lists: the script defines
    ``get_movielens_data_rank_multidomain`` twice, and the second definition (the one in force) has the six
    fields as ``sparse_feas`` and the domain indicator only as ``scenario_feas``."""
    def sparse(cols):
        return [SparseFeature(c, vocab_size=int(arr[c].max()) + 1, embed_dim=16) for c in cols]

    dense, sparse_feas, dom = [DenseFeature("age")], sparse(SPARSE), sparse(["domain_indicator"])
    six = sparse_feas
    if name == "star":
        return md.Star(dense + six, 3, fcn_dims=[128, 64, 32], aux_dims=[32])
    if name == "sharedbottom":
        return md.SharedBottom(dense + six, 3, bottom_params={"dims": [128]}, tower_params={"dims": [8]})
    if name == "adaptdhm":
        return md.AdaptDHM(features=sparse_feas + dom, fcn_dims=[64, 64], cluster_num=3, beta=0.9, device="cpu")
    if name == "adasparse":
        return md.AdaSparse(sce_features=dom, agn_features=sparse_feas, form="Fusion", epsilon=1e-2, alpha=1.0,
                            delta_alpha=1e-4, mlp_params={"dims": [32, 32], "dropout": 0.2, "activation": "relu"})
    if name == "ple":
        return md.PLE(dense + sparse_feas, 3, n_level=1, n_expert_specific=2, n_expert_shared=1,
                      expert_params={"dims": [16]}, tower_params={"dims": [8]})
    if name == "m2m":
        return md.M2M(features=sparse_feas + dom, domain_feature=dom, domain_num=3, num_experts=4,
                      expert_output_size=16, transformer_dims={"num_encoder_layers": 2, "num_decoder_layers": 2,
                                                               "dim_feedforward": 16})
    raise SystemExit(f"error: --model {name}: no SWR constructor for it (expected one of {sorted(OURS)})")


# ------------------------------------------------------------------------------------------- our side


def export_arrays(cache: Path, path: Path) -> int:
    """The three domains' rows as SWR's columns (ids 0-based, field codes, scaled age, domain, label, split)."""
    import hydra
    import numpy as np
    from hydra import compose, initialize_config_dir

    from unirec_lab.data.prepare import prepare_bundle
    from unirec_lab.data.schema import read_bundle

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("prepare", overrides=["scenario=movielens_swr", f"paths.root_dir={ROOT}"])
    parts = []
    for d, key in enumerate(DOMAINS):
        b = read_bundle(prepare_bundle(hydra.utils.instantiate(cfg.scenarios[key].source), cache))
        i, u, it = b.interactions, b.users.set_index("user"), b.items.set_index("item")
        uid, mid = i["user"].to_numpy(), i["item"].to_numpy()
        parts.append({"user_id": uid, "movie_id": mid, "gender": u["gender"].to_numpy()[uid],
                      "occupation": u["occupation"].to_numpy()[uid], "zip": u["zip"].to_numpy()[uid],
                      "cate_id": np.array([x[0] if len(x) else 0 for x in it["first_genre"]])[mid],
                      "age": u["age"].to_numpy(np.float32)[uid], "domain_indicator": np.full(len(i), d),
                      "label": i["label"].to_numpy(np.float32),
                      "split": i["split"].map({"train": 0, "val": 1, "test": 2}).to_numpy()})
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    np.savez(path, **arrays)
    return int(len(arrays["label"]))


OURS = {"sharedbottom": ["head=mlp", "head.hidden_dims=[8]", "head.batch_norm=true"],
        "star": ["head=star", "head.hidden_dims=[128,64,32]", "head.aux_dims=[32]", "head.extra_inputs=[]",
                 "backbone.trunk_dims=[]"],
        # as experiments/reproduce_swr_movielens/run.sh
        "ple": ["head=ple", "head.num_levels=1", "head.specific_experts=2", "head.shared_experts=1",
                "head.expert_dims=[16]", "head.tower_dims=[8]", "head.batch_norm=true", "backbone.trunk_dims=[]"],
        **{m: [f"head={m}", "backbone.trunk_dims=[]"] for m in ("adaptdhm", "adasparse", "m2m")}}


def ours(model: str, epochs: int, run_dir: Path, env: dict[str, str], patience: int = 0,
         scheduler: str = "steplr") -> dict:
    """``unirec-train`` with the experiment's config, ``epochs`` epochs (early stopping with ``patience`` if > 0, the
    best epoch tested; else none); peak memory of it."""
    stop = [f"callbacks.early_stopping.patience={patience}"] if patience else ["callbacks.early_stopping=null"]
    args = ["experiment=swr_movielens", f"model.name={model}", *OURS[model], "seed=1",
            f"trainer.max_epochs={epochs}", *stop, *([] if scheduler == "steplr" else ["scheduler=null"]),
            "logger=none", f"hydra.run.dir={run_dir}"]
    code = ("import resource, runpy, sys\nsys.argv = ['unirec-train', *sys.argv[1:]]\ntry:\n"
            "    runpy.run_module('unirec_lab.train', run_name='__main__')\nfinally:\n"
            "    print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if not (run_dir / "result.json").is_file():
        raise SystemExit(f"error: our run failed (exit {proc.returncode}): {proc.stdout[-800:]}{proc.stderr[-800:]}")
    rec = json.loads((run_dir / "result.json").read_text())
    peak = [int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("PEAK_KB")]
    return {"train_samples_per_s": rec["train_samples_per_second"], "wall_s": wall, "peak_mb": peak[-1] / 1024,
            "auc": rec["test"]["all"]["auc"], "logloss": rec["test"]["all"]["logloss"],
            "domain_auc": [rec["test"][d]["auc"] for d in DOMAINS], "epochs_run": rec["selection"].get("epochs_run"),
            "best_epoch": rec["selection"].get("best_epoch")}


def our_eval_rows_per_s(model: str, env_cache: str) -> float:
    """Our evaluation path (test forward + per-domain and pooled AUC / LogLoss) on the test split."""
    import torch
    from hydra import compose, initialize_config_dir

    from unirec_lab.engine.build import build
    from unirec_lab.evaluation.metrics import ScenarioEvaluator

    torch.set_num_threads(1)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=swr_movielens", *OURS[model],
                                          f"paths.root_dir={ROOT}", f"paths.cache_dir={env_cache}"],
                      return_hydra_config=False)
    dm, model = build(cfg)
    dm.setup()
    model.eval()
    ev = ScenarioEvaluator(dm.scenario_names, ["auc", "logloss"], pooled=True)
    t0 = time.perf_counter()
    with torch.no_grad():
        for batch in dm.test_dataloader():
            ev.update(batch, model(batch))
    ev.compute_from(ev.gathered())
    return len(dm.splits["test"]["label"]) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--swr-python", default="/tmp/swrvenv/bin/python", help="the Python of SWR's scratch venv")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--model", choices=sorted(OURS), default="sharedbottom")
    ap.add_argument("--baseline", help="a checkout whose code also runs our side (PYTHONPATH): before / after")
    ap.add_argument("--patience", type=int, default=0,
                    help="> 0: both sides validate every epoch and stop early (SWR's EarlyStopper / ours), the best "
                         "weights tested; 0: exactly --epochs epochs (equal work, for throughput)")
    ap.add_argument("--scheduler", choices=["steplr", "none"], default="steplr",
                    help="StepLR(2, 0.85) on both sides (our experiment's config), or none: SWR's script passes "
                         "scheduler_params without a scheduler_fn, so its own runs keep lr 1e-3")
    ap.add_argument("--swr-worker", nargs=2, metavar=("ARRAYS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.swr_worker:
        swr_worker(Path(args.swr_worker[0]), args.epochs, Path(args.swr_worker[1]), args.model, args.patience,
                   args.scheduler)
        return 0
    if args.baseline and not (Path(args.baseline) / "unirec_lab" / "__init__.py").is_file():
        raise SystemExit(f"error: --baseline {args.baseline}: not a checkout of this project (no unirec_lab/ package "
                         "there)")
    if not Path(args.swr_python).is_file():
        print(f"error: --swr-python {args.swr_python} does not exist (install SWR in a scratch venv: see the "
              "docstring)", file=sys.stderr)
        return 2
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    cache = Path(env.get("UNIREC_CACHE_DIR", ROOT / ".cache"))
    print(f"load before: {load_avg()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_p = Path(tmp)
        n = export_arrays(cache / "bundles", tmp_p / "ml.npz")
        print(f"{n} rows exported; {args.epochs} epochs each side, one thread each, run one after the other")
        t0 = time.perf_counter()
        proc = subprocess.run([args.swr_python, __file__, "--epochs", str(args.epochs), "--model", args.model,
                               "--patience", str(args.patience), "--scheduler", args.scheduler, "--swr-worker",
                               str(tmp_p / "ml.npz"), str(tmp_p / "swr.json")], env=env, stderr=subprocess.PIPE,
                              text=True)  # its per-epoch lines go to our stdout as they come
        if proc.returncode:
            print(f"error: SWR's worker failed (exit {proc.returncode}): {proc.stderr.strip()[-600:]}",
                  file=sys.stderr)
            return 1
        swr = json.loads((tmp_p / "swr.json").read_text())
        swr["wall_s"] = time.perf_counter() - t0
        print(f"load after SWR: {load_avg()}")
        us = ours(args.model, args.epochs, tmp_p / "ours", env, args.patience, args.scheduler)
        us["eval_rows_per_s"] = our_eval_rows_per_s(args.model, str(cache))
        print(f"load after ours: {load_avg()}")
        if args.baseline:  # the same job on the baseline checkout's package (its configs ship inside it)
            base = ours(args.model, args.epochs, tmp_p / "base",
                        {**env, "PYTHONPATH": str(Path(args.baseline).resolve())}, args.patience, args.scheduler)
            base["eval_rows_per_s"] = float("nan")
            print(f"load after baseline: {load_avg()}")
    rows = [("train samples/s", "train_samples_per_s", "{:,.0f}"), ("eval rows/s", "eval_rows_per_s", "{:,.0f}"),
            ("peak RSS MB", "peak_mb", "{:,.0f}"), ("wall s (whole run)", "wall_s", "{:.1f}"),
            ("test AUC total", "auc", "{:.4f}"), ("test LogLoss total", "logloss", "{:.4f}")]
    extra = f" ours at {args.baseline} | that / SWR |" if args.baseline else ""
    print(f"\n| {args.model}, {args.epochs} epochs | ours | SWR | ours / SWR |{extra}\n|---|---|---|---|"
          + ("---|---|" if args.baseline else ""))
    for label, key, f in rows:
        ratio = us[key] / swr[key] if swr[key] else float("nan")
        cells = f"| {label} | {f.format(us[key])} | {f.format(swr[key])} | {ratio:.2f}x |"
        if args.baseline:
            cells += f" {f.format(base[key])} | {base[key] / swr[key]:.2f}x |"
        print(cells)
    ceiling = swr.get("model_only_samples_per_s")
    if ceiling:
        print(f"SWR's model alone (its forward, BCE, backward and Adam step on batches collated beforehand, no data "
              f"loading): {ceiling:,.0f} samples/s = {ceiling / swr['train_samples_per_s']:.2f}x SWR's trainer: the "
              f"most any trainer of this model gains over SWR's on this thread; ours = "
              f"{us['train_samples_per_s'] / ceiling:.2f}x that ceiling")
    print("per-domain test AUC: ours " + " / ".join(f"{x:.4f}" for x in us["domain_auc"]) + "; SWR "
          + " / ".join(f"{x:.4f}" for x in swr["domain_auc"]))
    if swr.get("val_auc"):
        print("SWR validation AUC per epoch: " + " ".join(f"{x:.4f}" for x in swr["val_auc"]))
    print(f"epochs run (best epoch, 0-based): ours {us['epochs_run']} ({us['best_epoch']}), SWR {swr['epochs_run']} "
          f"({swr['best_epoch']}); patience {args.patience or 'none'}, scheduler {args.scheduler}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
