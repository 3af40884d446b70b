"""The non-default real data sets (one per variant config) built from the real raw files and checked against
the counts published in their SOURCE.md. Slow-ish (seconds each); needs ``../shared/data``."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from unirec_lab.data.prepare import prepare_bundle
from unirec_lab.data.scenarios.raw import default_raw_dir
from unirec_lab.data.schema import read_bundle

ROOT = Path(__file__).resolve().parents[2]

RAW = default_raw_dir()
if not RAW.is_dir():
    pytest.skip(f"real raw data not found at {RAW} (set UNIREC_RAW_DIR to the shared data folder)",
                allow_module_level=True)

# config -> (scenario key, expected raw counts from SOURCE.md, expected bundle users/items)
VARIANTS = {
    "ecommerce_sports": ("ecommerce", {"users": 35_598, "items": 18_357, "interactions": 296_337}, (35_598, 18_357)),
    "ecommerce_toys": ("ecommerce", {"users": 19_412, "items": 11_924, "interactions": 167_597}, (19_412, 11_924)),
    "ecommerce_ratings": ("ecommerce", {"ratings": 195_791, "users": 6_170, "items": 2_753, "categories": 22,
                                        "brands": 334, "views": 3_857}, (6_170, 2_753)),
    "social_yelp": ("social", {"ratings": 198_397, "users": 16_239, "items": 14_284, "friend_edges": 158_590,
                               "business_category": 40_009, "business_city": 14_267}, (16_239, 14_284)),
    "education_assist2015": ("education", {"responses": 683_801, "students": 19_840, "items": 100},
                             (19_840, 100)),
    "education_assist2017": ("education", {"responses": 941_502, "students": 1_705, "items": 3_162, "skills": 102},
                             (1_705, 3_162)),
    "education_statics": ("education", {"responses": 189_297, "students": 333, "items": 1_223}, (333, 1_223)),
    "news_bing": ("news", {"train_rows": 10_401, "test_rows": 462, "train_users": 469, "test_users": 138,
                           "train_positives": 6_305}, (469, 9_075)),
}


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(VARIANTS))
def test_variant_matches_published_counts(config, tmp_path):
    key, raw_counts, (nu, ni) = VARIANTS[config]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("prepare", overrides=[f"scenario={config}", f"paths.raw_dir={RAW}",
                                            f"paths.root_dir={ROOT}"])
    assert list(cfg.scenarios) == [key]
    src = hydra.utils.instantiate(cfg.scenarios[key].source)
    assert src.name == key
    b = read_bundle(prepare_bundle(src, tmp_path))
    got = b.stats["provenance"]["raw_counts"]
    assert {k: got[k] for k in raw_counts} == raw_counts
    assert (b.spec.num_users, b.spec.num_items) == (nu, ni)
    assert b.spec.has_group and b.spec.extra["protocol"]
    df = b.interactions
    if key == "ecommerce" and config != "ecommerce_ratings":
        assert int(df.label.sum()) == raw_counts["interactions"]
        assert df[df.split != "train"].groupby("group").size().eq(100).all()
    elif config == "education_assist2015" or config == "education_statics":
        assert len(df) == raw_counts["responses"]
    elif config == "news_bing":
        assert len(df) == 10_863 and (df.split == "test").sum() == 462
    elif config in ("ecommerce_ratings", "social_yelp"):
        assert len(df) == raw_counts["ratings"] and ((df.rating >= 4) == (df.label == 1)).all()
