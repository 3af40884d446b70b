"""Every real scenario config: package line, source name = domain key, protocol string, and the source can be
instantiated (constructor arguments match; nothing is read, so no raw data is needed)."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

ROOT = Path(__file__).resolve().parents[2]
SCEN = ROOT / "conf" / "scenario"
# `_template.yaml` (the user's table scenario template) is covered by tests/unit/test_table_scenario.py
REAL = sorted(p.stem for p in SCEN.glob("*.yaml")
              if not p.stem.startswith(("synthetic", "_")) and p.stem != "real"
              and p.read_text().splitlines()[0] != "# @package scenarios")
# scenarios with a key of their own instead of a domain variant's key, so they combine in one run (NeMig EN + DE
# share one text tower)
OWN_KEY = {"news_nemig", "news_nemig_de"}
# slice sets: one file, several scenarios (slices of one dataset sharing an id space), `# @package scenarios`
SLICE_SETS = sorted(p.stem for p in SCEN.glob("*.yaml") if p.read_text().splitlines()[0] == "# @package scenarios")


def _compose(scenario: str, tmp_path: Path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("prepare", overrides=[f"scenario={scenario}", f"paths.raw_dir={tmp_path}",
                                             f"paths.root_dir={ROOT}", f"cache_dir={tmp_path}/c"])


def test_every_domain_has_variants():
    assert {"ecommerce", "ecommerce_sports", "ecommerce_toys", "ecommerce_ratings", "social", "social_yelp",
            "education", "education_assist2015", "education_assist2017", "education_statics", "news",
            "news_bing"} <= set(REAL)


@pytest.mark.parametrize("name", REAL)
def test_real_scenario_config(name, tmp_path):
    domain = name if name in OWN_KEY else name.split("_")[0]
    first = (SCEN / f"{name}.yaml").read_text().splitlines()[0]
    assert first == f"# @package scenarios.{domain}"
    cfg = _compose(name, tmp_path)
    assert list(cfg.scenarios) == [domain]
    node = cfg.scenarios[domain]
    assert node.loss_weight == 1.0 and isinstance(node.protocol, str) and "\n" not in node.protocol
    assert node.source.raw_dir == str(tmp_path)
    src = hydra.utils.instantiate(node.source)
    assert src.name == domain and src.raw.root == tmp_path


def test_real_selects_the_four_defaults(tmp_path):
    cfg = _compose("real", tmp_path)
    assert list(cfg.scenarios) == ["ecommerce", "social", "education", "news"]
    targets = [cfg.scenarios[k].source._target_.rsplit(".", 1)[-1] for k in cfg.scenarios]
    assert targets == ["AmazonS3RecScenario", "CiaoScenario", "Assist2009Scenario", "MindScenario"]
    assert cfg.scenarios.ecommerce.source.category == "Beauty"


def test_prepare_defaults_to_synthetic(tmp_path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("prepare", overrides=[f"paths.root_dir={ROOT}"])
    assert cfg.force is False and str(cfg.cache_dir).endswith("/bundles")
    assert cfg.scenarios.news.source._target_.endswith("SyntheticScenario")


def test_movielens_swr_is_a_slice_set():
    assert SLICE_SETS == ["movielens_swr"]


@pytest.mark.parametrize("name", SLICE_SETS)
def test_slice_set_config(name, tmp_path):
    """Every slice of a set: a table source under paths.raw_dir, named as its key, sharing one id space and one
    pooled split, with a distinct slice rule; instantiable without reading anything."""
    cfg = _compose(name, tmp_path)
    keys = list(cfg.scenarios)
    assert len(keys) >= 2
    spaces, rules = set(), []
    for key in keys:
        node = cfg.scenarios[key]
        assert node.loss_weight == 1.0 and isinstance(node.protocol, str) and "\n" not in node.protocol
        assert node.source.base_dir.startswith(str(tmp_path))
        src = hydra.utils.instantiate(node.source)
        assert src.name == key and src.params["split"]["scope"] == "pooled"
        spaces.add(src.params["id_space"])
        rules.append((src.params["slice"]["column"], tuple(src.params["slice"]["values"])))
        assert all(p.startswith(str(tmp_path)) for p in src.files["interactions"]["paths"])
    assert len(spaces) == 1 and len(set(rules)) == len(rules)
