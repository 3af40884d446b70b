"""Fixed costs of one job: the real ``unirec-train`` path, timed phase by phase in a fresh interpreter.

    python scripts/bench_job.py scenario=ecommerce num_threads=1            # Beauty, unified, 1 epoch
    python scripts/bench_job.py --imports 5 scenario=ecommerce              # + our imports vs torch/Lightning

A child process imports ``torch, pytorch_lightning`` (timed), then ``unirec_lab.train`` and runs its Hydra
``main`` with ``hydra.run.dir`` in a temp dir and ``trainer.max_epochs=1`` (overridable), timing by wrappers
around the recipe: config (Hydra compose + checks), data setup (bundles, derived arrays, tensors), model build,
train, validation (incl. the sanity check), test, checkpoint writes / reads, result (``result.json``, tables)
and everything else (Lightning's trainer, loggers, our lazy imports during the run). Before it, an untimed child
prepares the bundles and derived arrays so the timed job is a cached one (``--cold`` skips that). The parent
samples the load average every 0.5 s while the child runs.

``--imports N``: N fresh interpreters each time ``import torch, pytorch_lightning`` and then importing every
module the timed job imported on top of them (ours and third-party ones we pull in), median and spread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _child_job(overrides: list[str], out: str) -> None:
    """Runs in the child: the timed job. Writes the phases, peak RSS and the modules it imported to ``out``."""
    t_start = time.perf_counter()
    import pytorch_lightning as pl
    import torch  # noqa: F401

    t_torch = time.perf_counter()
    base = set(sys.modules)
    import unirec_lab.train as train_mod

    t_ours = time.perf_counter()
    from unirec_lab.data.datamodule import MultiScenarioDataModule
    from unirec_lab.engine import recipe as recipe_mod
    from unirec_lab.engine.checkpoint_io import RunCheckpointIO

    acc: dict[str, float] = {}
    marks: dict[str, float] = {}

    def timed(owner: object, name: str, phase: str, minus: str | None = None) -> None:
        """Add the call's time to ``phase`` (less what ``minus`` gained meanwhile: nested phases)."""
        fn = getattr(owner, name)

        def wrapper(*a: object, **kw: object) -> object:
            t0, inner = time.perf_counter(), acc.get(minus, 0.0)
            try:
                return fn(*a, **kw)
            finally:
                nested = acc.get(minus, 0.0) - inner if minus else 0.0
                acc[phase] = acc.get(phase, 0.0) + time.perf_counter() - t0 - nested
        setattr(owner, name, wrapper)

    class PhaseTimer(pl.Callback):
        def _start(self, key: str) -> None:
            marks[key] = time.perf_counter()

        def _stop(self, key: str, phase: str) -> None:
            acc[phase] = acc.get(phase, 0.0) + time.perf_counter() - marks.pop(key)

        def on_train_epoch_start(self, *_: object) -> None:
            self._start("train")

        def on_train_epoch_end(self, *_: object) -> None:
            self._stop("train", "train+val in epoch")

        def on_validation_start(self, *_: object) -> None:
            self._start("val")

        def on_validation_end(self, trainer: pl.Trainer, *_: object) -> None:
            self._stop("val", "sanity check" if trainer.sanity_checking else "validation")

        def on_test_start(self, *_: object) -> None:
            self._start("test")

        def on_test_end(self, *_: object) -> None:
            self._stop("test", "test")

    orig_callbacks = recipe_mod.RunRecipe.config_callbacks
    recipe_mod.RunRecipe.config_callbacks = lambda self, *a: [*orig_callbacks(self, *a), PhaseTimer()]
    orig_run = recipe_mod.RunRecipe.run

    def run(self: object) -> float:
        marks["run"] = time.perf_counter()
        return orig_run(self)
    recipe_mod.RunRecipe.run = run
    timed(recipe_mod.RunRecipe, "setup", "config")
    timed(MultiScenarioDataModule, "prepare_data", "data setup")
    timed(MultiScenarioDataModule, "setup", "data setup", minus="data setup")  # setup may call prepare_data
    timed(recipe_mod, "build", "model build", minus="data setup")
    timed(RunCheckpointIO, "save_checkpoint", "checkpoints")
    timed(RunCheckpointIO, "load_checkpoint", "checkpoints")
    timed(recipe_mod.RunRecipe, "record", "result")
    timed(recipe_mod.RunRecipe, "publish", "result")
    sys.argv = ["unirec-train", *overrides]
    t_main = time.perf_counter()
    try:
        train_mod.main()
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    t_end = time.perf_counter()
    import resource

    phases = dict(acc)
    phases["config"] = phases.get("config", 0.0) + marks["run"] - t_main  # Hydra compose before the recipe
    phases["train"] = phases.pop("train+val in epoch", 0.0) - phases.get("validation", 0.0)  # val runs inside
    phases["import torch, pytorch_lightning"] = t_torch - t_start
    phases["import ours (unirec_lab.train)"] = t_ours - t_torch
    total = t_end - t_start
    phases["other (Lightning, loggers, lazy imports)"] = total - sum(phases.values())
    mods = sorted(set(sys.modules) - base)
    Path(out).write_text(json.dumps({"phases": phases, "total": total, "modules": mods,
                                     "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _child_imports(modules: list[str], out: str) -> None:
    t0 = time.perf_counter()
    import pytorch_lightning  # noqa: F401
    import torch  # noqa: F401

    t1 = time.perf_counter()
    import importlib

    failed = []
    for m in modules:
        if m not in sys.modules:
            try:
                importlib.import_module(m)
            except Exception:  # noqa: BLE001 (a module that only imports inside a running job)
                failed.append(m)
    t2 = time.perf_counter()
    Path(out).write_text(json.dumps({"torch_pl": t1 - t0, "ours": t2 - t1, "failed": failed}))


def _child_prepare(overrides: list[str]) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from unirec_lab.engine.build import build_datamodule

    from conftest import compose_cfg

    cfg = compose_cfg(Path(tempfile.mkdtemp()) / "run", overrides)
    cfg.paths.cache_dir = os.environ["UNIREC_CACHE_DIR"]
    build_datamodule(cfg)


class LoadSampler:
    """os.getloadavg()[0] every ``every`` seconds while running (the machine's competing load)."""

    def __init__(self, every: float = 0.5) -> None:
        self.every, self.samples, self._stop = every, [], threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(self.every)

    def __enter__(self) -> LoadSampler:
        self._t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._t.join()

    def describe(self) -> str:
        s = self.samples or [float("nan")]
        return f"load average min {min(s):.2f} / mean {statistics.fmean(s):.2f} / max {max(s):.2f}"


def _spawn(mode: str, payload: object, out: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--child", mode, json.dumps(payload), str(out)], check=True,
                   cwd=out.parent, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--imports", type=int, default=0, help="repeats of the import measurement (0 = off)")
    ap.add_argument("--cold", action="store_true", help="do not prepare bundles / derived arrays first")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_job."))
    cache = os.environ.get("UNIREC_CACHE_DIR", str(ROOT / ".cache"))
    os.environ["UNIREC_CACHE_DIR"] = cache
    os.environ.setdefault("UNIREC_RAW_DIR", str(ROOT.parent / "shared" / "data"))
    os.environ.setdefault("WANDB_MODE", "offline")
    overrides = ["trainer.max_epochs=1", "trainer.enable_progress_bar=false", *args.overrides,
                 f"hydra.run.dir={tmp / 'run'}"]
    if not args.cold:
        _spawn("prepare", [o for o in overrides if not o.startswith("hydra.")], tmp / "prepare.json")
    with LoadSampler() as load:
        wall = _spawn("job", overrides, tmp / "job.json")
    res = json.loads((tmp / "job.json").read_text())
    ph = res["phases"]
    order = ["import torch, pytorch_lightning", "import ours (unirec_lab.train)", "config", "data setup",
             "model build", "train", "sanity check", "validation", "test", "checkpoints", "result",
             "other (Lightning, loggers, lazy imports)"]
    print(f"job: {' '.join(args.overrides)} ({'cold' if args.cold else 'cached'} data); {load.describe()}")
    print(f"{'phase':<44}{'seconds':>9}")
    for k in order:
        print(f"{k:<44}{ph.get(k, 0.0):>9.2f}")
    print(f"{'total in the child (after interpreter start)':<44}{res['total']:>9.2f}")
    print(f"{'child process wall (incl. interpreter)':<44}{wall:>9.2f}")
    outside = res["total"] - ph["import torch, pytorch_lightning"] - ph["train"]
    print(f"outside training, minus interpreter and torch/Lightning imports: {outside:.2f} s = "
          f"{outside / ph['train']:.2f}x training (target <= 3x); validation / training = "
          f"{ph['validation'] / ph['train']:.2f} (target <= 1); peak RSS {res['peak_rss_mib']:.0f} MiB")
    if args.imports:
        mods = [m for m in res["modules"] if not m.startswith("__")]
        runs = []
        with LoadSampler() as load:
            for i in range(args.imports):
                _spawn("imports", mods, tmp / f"imports{i}.json")
                runs.append(json.loads((tmp / f"imports{i}.json").read_text()))
        tp, ours = [r["torch_pl"] for r in runs], [r["ours"] for r in runs]
        print(f"imports, {args.imports} fresh interpreters ({load.describe()}): import torch, pytorch_lightning "
              f"median {statistics.median(tp):.2f} s [{min(tp):.2f}-{max(tp):.2f}]; then the job's other "
              f"{len(mods)} modules median {statistics.median(ours):.2f} s [{min(ours):.2f}-{max(ours):.2f}] "
              f"(target <= 0.5 s)")
        top = sorted({m.split(".")[0] for m in mods})
        print(f"  top-level packages the job imports beyond torch/Lightning: {', '.join(top)}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, payload, out = sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
        {"job": lambda: _child_job(payload, out), "imports": lambda: _child_imports(payload, out),
         "prepare": lambda: _child_prepare(payload)}[mode]()
    else:
        main()
