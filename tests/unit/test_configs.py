"""Every config under conf/ composes, and every ``_target_`` in it instantiates (typos fail here)."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
from omegaconf import OmegaConf

from conftest import CONF

GROUPS = ["scenario", "backbone", "head", "model", "trainer", "logger", "callbacks", "data", "paths", "world",
          "debug", "experiment", "sweep", "objectives"]


def options(group: str) -> list[str]:
    d = CONF / group
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


CASES = [(g, o) for g in GROUPS for o in options(g)]


def _instantiate_all(cfg) -> None:
    for k in cfg.scenarios:
        src = hydra.utils.instantiate(cfg.scenarios[k].source)
        assert src.name == k
    if cfg.logger is not None and cfg.logger.get("_target_"):
        kw = {k: v for k, v in cfg.logger.items() if k != "extra_tags"}
        hydra.utils.instantiate(kw, _partial_=True)
    hydra.utils.instantiate(cfg.trainer, _partial_=True)
    for cb in cfg.callbacks.values():
        if cb is not None:
            hydra.utils.instantiate(cb, _partial_=True)
    assert callable(hydra.utils.instantiate(cfg.optimizer))
    assert callable(hydra.utils.instantiate(cfg.backbone))
    assert callable(hydra.utils.instantiate(cfg.head))
    assert callable(hydra.utils.instantiate(cfg.model.builder))
    for obj in (cfg.get("objectives") or {}).values():
        assert callable(hydra.utils.instantiate(obj))
    assert cfg.model.mode in ("joint", "separate")


@pytest.mark.parametrize("group, option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_config_composes_and_instantiates(group, option, tmp_path, monkeypatch):
    from conftest import compose_cfg

    monkeypatch.setenv("UNIREC_RAW_DIR", str(tmp_path / "raw"))  # constructors must not need the data
    override = f"{group}={option}"
    cfg = compose_cfg(tmp_path, [override])
    OmegaConf.resolve(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]))
    _instantiate_all(cfg)


def test_unknown_key_fails_at_compose(tmp_path):
    from hydra.errors import ConfigCompositionException

    from conftest import compose_cfg

    with pytest.raises(ConfigCompositionException):
        compose_cfg(tmp_path, ["backbone.embeding_dim=8"])


def test_builder_rejects_misspelled_argument(tmp_path, tiny_dm):
    from conftest import compose_cfg

    cfg = compose_cfg(tmp_path, ["+backbone.trunk_dimz=[8]"])
    with pytest.raises(TypeError, match="trunk_dimz"):
        hydra.utils.instantiate(cfg.backbone)(tiny_dm.space)


def test_default_config_is_the_synthetic_unified_run(tmp_path):
    from conftest import compose_cfg

    cfg = compose_cfg(tmp_path)
    assert list(cfg.scenarios) == ["ecommerce", "social", "education", "news"]
    assert cfg.model.name == "unified" and cfg.selection.monitor == "val/mean/auc"
    assert Path(cfg.paths.output_dir) == tmp_path
