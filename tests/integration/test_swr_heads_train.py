"""Every Scenario-Wise Rec head trains end to end as ``unirec-train model=unified head=<name> debug=fast`` on
the synthetic default: composed from the real config, fitted, tested on its best checkpoint, recorded."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from unirec_lab.train import train

from conftest import compose_cfg

SWR_HEADS = ["sarnet", "m2m", "adasparse", "adaptdhm", "epnet", "ppnet", "hamur", "m3oe"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("swr_heads")  # one data cache (root/cache) for every head


@pytest.mark.slow
@pytest.mark.parametrize("head", SWR_HEADS)
def test_head_trains_end_to_end(root: Path, head: str) -> None:
    cfg = compose_cfg(root / head, ["model=unified", f"head={head}", "debug=fast", "logger=none", "num_threads=1"])
    train(cfg)
    r = json.loads((root / head / "result.json").read_text())
    assert r["status"] == "completed" and r["config"]["head_name"] == head
    assert r["num_parameters"] > 0 and r["train_samples_per_second"] > 0
    assert set(r["test"]) == {"ecommerce", "social", "education", "news"}
    for s, m in r["test"].items():
        assert 0.0 <= m["auc"] <= 1.0 and math.isfinite(m["logloss"]), (s, m)
