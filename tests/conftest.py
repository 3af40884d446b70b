"""Shared fixtures: the real configs composed with Hydra, and a tiny synthetic multi-scenario data set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")



def tiny_overrides() -> list[str]:
    """Overrides that shrink the four synthetic scenarios so a full train takes seconds."""
    out = []
    for name, users, items in (("ecommerce", 150, 120), ("social", 60, 100), ("education", 100, 60),
                               ("news", 120, 90)):
        out += [f"scenarios.{name}.source.num_users={users}", f"scenarios.{name}.source.num_items={items}"]
    out += ["scenarios.news.source.rows_per_user=48", "data.batch_size=256", "trainer.max_epochs=2",
            "backbone.embedding_dim=16", "backbone.trunk_dims=[32]", "head.hidden_dims=[16]"]
    return out


def compose_cfg(tmp_path: Path, overrides: list[str] | None = None, config_name: str = "train"):
    """Compose the real config (as the CLI would) with ``${hydra:...}`` interpolations resolvable."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name, overrides=[f"hydra.run.dir={tmp_path}", *(overrides or [])],
                      return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
        cfg.paths.cache_dir = str(tmp_path.parent / "cache")
    return cfg


@pytest.fixture
def cfg_factory(tmp_path):
    def make(overrides: list[str] | None = None, tiny: bool = True):
        return compose_cfg(tmp_path / "run", (tiny_overrides() if tiny else []) + (overrides or []))

    return make


@pytest.fixture(scope="session")
def tiny_dm(tmp_path_factory):
    """A prepared 4-scenario synthetic datamodule with tiny sizes (shared by read-only tests)."""
    from unirec_lab.data.datamodule import MultiScenarioDataModule
    from unirec_lab.data.synthetic import SyntheticScenario

    world = dict(dim=8, num_topics=10, num_segments=6, num_tokens=50, tokens_per_topic=10, seed=3)
    sc = {
        "ecommerce": SyntheticScenario("ecommerce", world, num_users=150, num_items=120, rows_per_user=20,
                                       label_rate=0.2),
        "social": SyntheticScenario("social", world, num_users=60, num_items=100, rows_per_user=10,
                                    label_rate=0.55),
        "education": SyntheticScenario("education", world, num_users=100, num_items=60, rows_per_user=20,
                                       label_rate=0.65),
        "news": SyntheticScenario("news", world, num_users=120, num_items=90, rows_per_user=48,
                                  label_rate=0.1, text_tokens=4, group_by="impression", impression_size=12),
    }
    dm = MultiScenarioDataModule({k: {"source": v} for k, v in sc.items()},
                                 cache_dir=tmp_path_factory.mktemp("cache"), batch_size=128, history_len=8)
    dm.prepare_data()
    dm.setup()
    return dm
