"""NeMig (English and German) prepared from the real raw files: counts equal SOURCE.md, the protocol holds
(split by user, held-out articles absent from training in every form), and the text vectors are there.

Needs the raw data (``<repo>/../shared/data`` or ``$UNIREC_RAW_DIR``); skipped with a reason when it is absent.
"""

from __future__ import annotations

import numpy as np
import pytest

from unirec_lab.data.scenarios.nemig import NemigScenario
from unirec_lab.data.scenarios.raw import default_raw_dir

RAW = default_raw_dir()
if not (RAW / "news" / "nemig_en").is_dir():
    pytest.skip(f"NeMig raw data not found under {RAW}/news (set UNIREC_RAW_DIR to the shared data folder)",
                allow_module_level=True)

# SOURCE.md of news/nemig_en and news/nemig_de
SOURCE_COUNTS = {
    "en": dict(impressions=15000, users=3000, pairs=85218, clicks=14148, shown_news=4137, history_news=3999,
               referenced_news=4170, news_tsv_rows=4596, news_tsv_categories=41, mean_history_len=4.65),
    "de": dict(impressions=17160, users=3432, pairs=102931, clicks=17153, shown_news=4859, history_news=4786,
               referenced_news=4933, news_tsv_rows=4934, news_tsv_categories=26, mean_history_len=5.46),
}
NO_TEXT_VEC = ["category", "sentiment", "leaning", "entities", "title", "abstract"]


@pytest.fixture(scope="module", params=["en", "de"])
def built(request):
    return request.param, NemigScenario(f"nemig_{request.param}", RAW, language=request.param,
                                        item_fields=NO_TEXT_VEC).build()


def test_counts_equal_source_md(built):
    lang, b = built
    counts = b.provenance["raw_counts"]
    assert {k: counts[k] for k in SOURCE_COUNTS[lang]} == SOURCE_COUNTS[lang]
    assert b.spec.num_items == SOURCE_COUNTS[lang]["referenced_news"]
    assert b.spec.num_users == SOURCE_COUNTS[lang]["users"]


def test_protocol_cannot_leak(built):
    _, b = built
    inter = b.interactions
    assert inter.groupby("user")["split"].nunique().max() == 1  # whole users per split
    share = inter.drop_duplicates("user")["split"].value_counts(normalize=True)
    assert abs(share["test"] - 0.1) < 0.01 and abs(share["val"] - 0.1) < 0.01
    train = inter[inter["split"] == "train"]
    in_train = np.zeros(b.spec.num_items, dtype=bool)
    in_train[train["item"].to_numpy()] = True
    in_train[np.concatenate(train["history"].to_numpy()).astype(np.int64)] = True
    held = b.spec.extra["held_out_items"]
    assert held == round(0.2 * b.spec.num_items)
    assert (~in_train).sum() >= held  # no held-out article is a train target or in a train history
    test = inter[inter["split"] == "test"]
    unseen = ~np.isin(test["item"].to_numpy(), train["item"].to_numpy())
    assert 0.1 < unseen.mean() < 0.4 and test.loc[unseen, "label"].sum() > 100  # a measurable cold slice
    assert inter.groupby("group")["user"].nunique().max() == 1  # groups are impressions of one user
