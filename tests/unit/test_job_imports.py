"""A cached job starts without pandas / pyarrow: its modules import them lazily (``utils/lazy.py``) and a cached
bundle loads from memory-mapped arrays (``data/derived.py``), so only a (re)build reads a frame."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from unirec_lab.data.datamodule import MultiScenarioDataModule
from unirec_lab.data.synthetic import SyntheticScenario
from unirec_lab.utils.lazy import LazyModule, lazy_import

WORLD = dict(dim=8, num_topics=10, num_segments=6, num_tokens=50, tokens_per_topic=10, seed=3)
HEAVY = ("pandas", "pyarrow", "wandb", "matplotlib.pyplot", "sklearn", "scipy.stats")

CHILD = """
import json, sys
import torch, pytorch_lightning
base = set(sys.modules)  # what torch and Lightning import themselves is not ours to avoid
from unirec_lab.data.datamodule import MultiScenarioDataModule
from unirec_lab.data.synthetic import SyntheticScenario
import unirec_lab.train, unirec_lab.engine.recipe, unirec_lab.engine.guard
import unirec_lab.data.scenarios.amazon_s3rec, unirec_lab.data.scenarios.mind
at_import = [m for m in {heavy!r} if m in set(sys.modules) - base]
src = SyntheticScenario("news", {world!r}, num_users=30, num_items=40, rows_per_user=24, group_by="impression",
                        impression_size=6, text_tokens=4)
dm = MultiScenarioDataModule({{"news": {{"source": src}}}}, cache_dir={cache!r}, history_len=5)
dm.setup()
assert len(dm.splits["test"]["label"]) > 0
print(json.dumps({{"at_import": at_import, "after_setup": [m for m in {heavy!r} if m in set(sys.modules) - base]}}))
"""


def test_lazy_module_imports_on_first_use():
    mod = lazy_import("json.tool") if "json.tool" not in sys.modules else pytest.skip("json.tool already imported")
    assert isinstance(mod, LazyModule) and "json.tool" not in sys.modules
    assert callable(mod.main) and "json.tool" in sys.modules
    assert lazy_import("json") is sys.modules["json"]


@pytest.mark.slow
def test_cached_job_start_imports_no_pandas(tmp_path):
    src = SyntheticScenario("news", WORLD, num_users=30, num_items=40, rows_per_user=24, group_by="impression",
                            impression_size=6, text_tokens=4)
    MultiScenarioDataModule({"news": {"source": src}}, cache_dir=tmp_path, history_len=5).prepare_data()
    code = CHILD.format(heavy=HEAVY, world=WORLD, cache=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=85,
                         env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"at_import": [], "after_setup": []}
