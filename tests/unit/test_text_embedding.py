"""The frozen text encoder (offline, weights hash checked first), the ``text_embedding`` field kind in a bundle
(deterministic, equal to a direct encoder call, keyed into the fingerprint) and the NeMig loader on a tiny
synthetic copy of its format (protocol invariants, held-out articles, one-line errors)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.unit.test_scenarios_loaders import write_dataset
from unirec_lab.data.feature_space import build_feature_space
from unirec_lab.data.prepare import fingerprint_key, prepare_bundle
from unirec_lab.data.scenarios.nemig import NemigScenario
from unirec_lab.data.scenarios.raw import RawDataError
from unirec_lab.data.scenarios.text_embedding import cached_encode, join_columns
from unirec_lab.data.schema import BundleError, read_bundle
from unirec_lab.data.text_encoder import MINILM_SHA256, EncoderSpec, TextEncoderError, encode_texts
from unirec_lab.models.embedding import FeatureEmbedding

ENT = "[{'SurfaceForms': 'Texas', 'WikidataId': 'https://www.wikidata.org/wiki/Q1439'}]"


def nemig_files(n_users: int = 20, n_news: int = 30, seed: int = 0) -> dict[str, str]:
    rng = np.random.default_rng(seed)
    news = [f"news_{i}\tTitle number {i} about the border\tAbstract {i} on migration policy\t{ENT if i % 2 else '[]'}"
            f"\t[]\tcat_{i % 3}\t{['Positive', 'Neutral', 'Negative'][i % 3]}\t{['left', 'right', ''][i % 3]}"
            for i in range(n_news)]
    beh, imp = [], 0
    for u in range(n_users):
        hist = " ".join(f"news_{j}" for j in rng.choice(n_news, 3, replace=False))
        for _ in range(3):
            shown = rng.choice(n_news, 4, replace=False)
            labels = rng.permutation([1, 0, 0, 0])
            beh.append(f"{imp}\tU{u}\t{hist}\t" + " ".join(f"news_{s}-{y}" for s, y in zip(shown, labels)))
            imp += 1
    return {"behaviors.tsv": "\n".join(beh) + "\n", "news.tsv": "\n".join(news) + "\n"}


def source(root: Path, **kw) -> NemigScenario:
    return NemigScenario("news_nemig", root, **{"val_frac": 0.2, "test_frac": 0.2, **kw})


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    write_dataset(tmp_path, "news/nemig_en", nemig_files())
    return tmp_path


def test_wrong_weights_hash_is_one_line_before_loading(tmp_path: Path):
    (tmp_path / "model.safetensors").write_bytes(b"not the published weights")
    spec = EncoderSpec(path=str(tmp_path))
    with pytest.raises(TextEncoderError) as e:
        encode_texts(["a"], spec)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "model.safetensors") in msg and MINILM_SHA256 in msg
    assert "has sha256 " in msg  # the actual hash is named too
    with pytest.raises(TextEncoderError, match="does not exist"):
        EncoderSpec(path=str(tmp_path / "nowhere")).weights_sha256()
    with pytest.raises(TextEncoderError, match=r"unknown key\(s\) \['nmae'\]"):
        EncoderSpec.from_config({"nmae": "x"})


def test_encoder_offline_and_equal_to_a_direct_call():
    from sentence_transformers import SentenceTransformer
    spec = EncoderSpec()
    texts = ["Border crossings rose in May", "", "Asylum policy debate"]
    vecs, info = encode_texts(texts, spec, progress=False)
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert vecs.shape == (3, 384) and info["texts"] == 2 and not vecs[1].any()  # empty text: no vector
    direct = SentenceTransformer(str(spec.model_dir()), device="cpu").encode(
        [texts[0], texts[2]], normalize_embeddings=True)
    np.testing.assert_allclose(vecs[[0, 2]], direct, atol=1e-5)
    assert spec.weights_sha256() == MINILM_SHA256


def test_encoder_output_cache(tmp_path: Path):
    texts = ["Border crossings rose in May", "Asylum policy debate"]
    first, info1 = cached_encode(texts, EncoderSpec(), tmp_path, progress=False)
    again, info2 = cached_encode(texts, EncoderSpec(), tmp_path, progress=False)
    assert "cached" not in info1 and info2["cached"].startswith(str(tmp_path))
    np.testing.assert_array_equal(first, again)
    other, info3 = cached_encode(texts[:1], EncoderSpec(), tmp_path, progress=False)  # other texts: own entry
    assert "cached" not in info3 and other.shape == (1, 384) and len(list(tmp_path.glob("*.npy"))) == 2


def test_join_columns_and_bad_column():
    df = pd.DataFrame({"title": ["A", "", "C"], "abstract": ["x", "y", ""]})
    assert join_columns(df, ["title", "abstract"], "w").tolist() == ["A . x", "y", "C"]
    with pytest.raises(TextEncoderError, match="missing: \\['body'\\]"):
        join_columns(df, ["title", "body"], "scenario 'x'")


def test_bundle_text_vectors_deterministic_direct_and_fingerprinted(raw: Path, tmp_path: Path):
    src = source(raw)
    p1 = prepare_bundle(src, tmp_path / "c1")
    p2 = prepare_bundle(source(raw), tmp_path / "c2")
    b1, b2 = read_bundle(p1), read_bundle(p2)
    v1 = np.stack(b1.items["text_vec"].to_numpy())
    np.testing.assert_array_equal(v1, np.stack(b2.items["text_vec"].to_numpy()))  # deterministic
    news = pd.read_csv(raw / "news/nemig_en/news.tsv", sep="\t", header=None, dtype=str, keep_default_na=False)
    beh = (raw / "news/nemig_en/behaviors.tsv").read_text().split()
    ids = sorted({t.rsplit("-", 1)[0] for t in beh if t.startswith("news_")})  # items: sorted raw ids
    meta = news.set_index(0).reindex(ids)
    texts = (meta[1] + " . " + meta[2]).tolist()
    direct, _ = encode_texts(texts, EncoderSpec(), progress=False)
    np.testing.assert_allclose(v1.astype(np.float32), direct, atol=2e-3)  # float16 storage
    f = {x.name: x for x in b1.spec.item_fields}["text_vec"]
    assert (f.kind, f.namespace, f.max_len) == ("text_embedding", "shared:text", 384)
    fp = src.fingerprint()["text_embedding"]
    assert fp["name"] == "all-MiniLM-L6-v2" and fp["weights_sha256"] == MINILM_SHA256
    keys = {fingerprint_key(s.fingerprint()) for s in (
        src, source(raw, text_columns=["title"]), source(raw, encoder={"name": "other-name"}),
        source(raw, item_fields=["category"]))}
    assert len(keys) == 4  # columns, encoder name and the field set all change the bundle key
    with pytest.raises(TextEncoderError, match="has sha256 .* expected 0{64}"):
        source(raw, encoder={"sha256": "0" * 64}).fingerprint()
    # into the model: one shared projection, zero contribution for padding
    space = build_feature_space({"news_nemig": b1})
    assert [s.table for s in space.text_slots] == ["shared/text"] and space.item_text.shape[1] == 384
    emb = FeatureEmbedding(space, 8, use_item_id=False)
    out = emb.item_vectors(torch.tensor([[0, 1, 2]]))
    assert out.shape == (1, 3, 8) and not out[0, 0].any() and out[0, 1].abs().sum() > 0


def test_nemig_protocol_split_by_user_and_held_out_articles(raw: Path):
    b = source(raw, item_fields=["category", "sentiment", "leaning", "entities", "title", "abstract"]).build()
    inter = b.interactions
    assert inter.groupby("user")["split"].nunique().max() == 1  # a user sits in one split
    assert set(inter["split"]) == {"train", "val", "test"}
    held = b.spec.extra["held_out_items"]
    assert held == round(0.2 * b.spec.num_items)
    train = inter[inter["split"] == "train"]
    train_items = set(train["item"]) | set(np.concatenate(train["history"].to_numpy()))
    test_items = set(inter.loc[inter["split"] != "train", "item"])
    unseen = test_items - set(train["item"])
    assert unseen and not (unseen & set(np.concatenate(train["history"].to_numpy())))
    assert len(train_items) + held >= b.spec.num_items  # held-out articles never occur in training
    assert (inter.groupby("group")["label"].sum() >= 0).all() and inter["group"].is_monotonic_increasing
    kinds = {f.name: (f.kind, f.namespace) for f in b.spec.item_fields}
    assert kinds["entities"] == ("multi", "shared:entities") and kinds["title"] == ("text", "shared:tokens")
    ent = b.items["entities"].map(len).to_numpy()
    assert (ent[1::2] >= 0).all() and ent.sum() > 0


def test_nemig_bad_input_is_one_line(tmp_path: Path):
    files = nemig_files()
    files["behaviors.tsv"] = files["behaviors.tsv"].replace("news_1-", "N1-", 1)
    write_dataset(tmp_path, "news/nemig_en", files)
    with pytest.raises(RawDataError, match=r"behaviors\.tsv:\d+: impressions must be .*news_<n>-0/1"):
        source(tmp_path, item_fields=["category"]).build()
    with pytest.raises(ValueError, match=r"item_fields \['tilte'\] unknown"):
        source(tmp_path, item_fields=["tilte"])
    with pytest.raises(ValueError, match="language='fr'"):
        source(tmp_path, language="fr")


def test_text_embedding_bundle_contract():
    from unirec_lab.data.schema import FieldSpec, _check_field
    f = FieldSpec("text_vec", "text_embedding", 0, "shared:text", max_len=3)
    ok = pd.DataFrame({"text_vec": [np.ones(3, np.float16), np.zeros(0, np.float16)]})
    _check_field(ok, f, "items.parquet")
    bad = pd.DataFrame({"text_vec": [np.ones(2, np.float16), np.zeros(0, np.float16)]})
    with pytest.raises(BundleError, match="vector of length 2, expected 3"):
        _check_field(bad, f, "items.parquet")


def test_mind_titles_and_skill_names_join_the_shared_text_tower(raw: Path, tmp_path: Path):
    from tests.unit.test_scenarios_loaders import assist_files, mind_files
    from unirec_lab.data.scenarios.assist2009 import Assist2009Scenario
    from unirec_lab.data.scenarios.mind import MindScenario
    write_dataset(tmp_path, "news/mind_small_subset", mind_files())
    write_dataset(tmp_path, "education/assist2009_pid", assist_files())
    plain, with_vec = MindScenario("news", tmp_path), MindScenario("news", tmp_path, text_encoder={})
    assert "text_embedding" not in plain.fingerprint() and fingerprint_key(plain.fingerprint()) != fingerprint_key(
        with_vec.fingerprint())  # the default bundle is unchanged; the encoder keys the other one
    mind = read_bundle(prepare_bundle(with_vec, tmp_path / "c"))
    lens = mind.items["title_vec"].map(len).to_numpy()
    has_title = mind.items["title"].map(len).to_numpy() > 0
    assert ((lens == 384) == has_title).all() and has_title.any()  # a vector exactly where a title exists
    kt = read_bundle(prepare_bundle(Assist2009Scenario("education", tmp_path, text_encoder={}), tmp_path / "c"))
    assert (kt.items["skill_vec"].map(len) == 384).any()
    nemig = read_bundle(prepare_bundle(source(raw), tmp_path / "c"))
    space = build_feature_space({"news_nemig": nemig, "news": mind, "education": kt})
    assert [s.table for s in space.text_slots] == ["shared/text"]  # one tower for all three scenarios
    emb = FeatureEmbedding(space, 8)
    assert list(emb.text_proj) == ["shared__text"]
    with pytest.raises(ValueError, match="no skill names to encode"):
        from unirec_lab.data.scenarios.assist2015 import Assist2015Scenario
        Assist2015Scenario("education", tmp_path, text_encoder={})


def test_ciao_category_names_share_the_text_tower(tmp_path: Path):
    from tests.unit.test_scenarios_loaders import ciao_files
    from unirec_lab.data.scenarios.ciao import CiaoScenario
    rows = [[u, 100 + k, 1 + k % 2, 5 if k % 3 else 2, 1, 1000 + 10 * k + u] for u in (10, 20, 30) for k in range(10)]
    trust = np.array([[10, 20], [20, 10]])
    write_dataset(tmp_path, "social/ciao", ciao_files(np.array(rows, dtype=np.int32), trust.astype(np.uint16)))
    src = CiaoScenario("social", tmp_path, text_encoder={})
    b = src.build()
    vec = np.stack(b.items["category_vec"].to_numpy()).astype(np.float32)
    direct, _ = encode_texts(["DVDs", "Books"], EncoderSpec(), progress=False)
    cat = b.items["category"].to_numpy()
    np.testing.assert_allclose(vec, direct[cat - 1], atol=2e-3)  # each item: its category name's vector
    assert fingerprint_key(src.fingerprint()) != fingerprint_key(CiaoScenario("social", tmp_path).fingerprint())
    (tmp_path / "social/ciao/catalog_ciao.txt").write_bytes(b"DVDs\n")
    with pytest.raises(RawDataError, match=r"catalog_ciao\.txt: expected '<category id> <name>' per line"):
        CiaoScenario("social", tmp_path, text_encoder={})._category_vectors(
            tmp_path / "social/ciao/catalog_ciao.txt", cat)
