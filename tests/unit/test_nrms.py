"""NRMS: the user encoder ignores padding exactly, the model's catalogue path equals its forward, and it refuses
a feature space in which an item would have no vector."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.unit.test_scenarios_loaders import write_dataset
from tests.unit.test_text_embedding import nemig_files
from unirec_lab.data.feature_space import build_feature_space
from unirec_lab.data.prepare import prepare_bundle
from unirec_lab.data.scenarios.nemig import NemigScenario
from unirec_lab.data.schema import read_bundle
from unirec_lab.models.backbones.nrms import NRMSUserEncoder
from unirec_lab.models.baselines.nrms import NRMS


def test_user_encoder_padding_is_exact_and_empty_is_zero():
    torch.manual_seed(0)
    enc = NRMSUserEncoder(8, num_heads=2, attention_dim=4, dropout=0.0).eval()
    hist = torch.randn(3, 5, 8)
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    hist = hist * mask.unsqueeze(-1)
    out = enc(hist, mask, hist[:, 0])
    trimmed = enc(hist[:1, 2:], mask[:1, 2:], hist[:1, 0])  # the same history without its left padding
    torch.testing.assert_close(out[0], trimmed[0])
    assert not out[2].any() and out[1].abs().sum() > 0
    with pytest.raises(ValueError, match="not divisible by num_heads=3"):
        NRMSUserEncoder(8, num_heads=3)


def _space(tmp_path: Path, fields: list[str]):
    write_dataset(tmp_path, "news/nemig_en", nemig_files())
    src = NemigScenario("news_nemig", tmp_path, val_frac=0.2, test_frac=0.2, item_fields=fields)
    return build_feature_space({"news_nemig": read_bundle(prepare_bundle(src, tmp_path / "c"))})


def test_catalogue_scoring_equals_forward(tmp_path: Path):
    torch.manual_seed(0)
    model = NRMS(_space(tmp_path, ["title", "abstract", "category"]), embedding_dim=8, num_heads=2,
                 dropout=0.0).eval()
    batch = {"user": torch.tensor([1, 2]), "item": torch.tensor([3, 4]),
             "history": torch.tensor([[0, 5, 6], [7, 8, 9]]), "scenario": torch.zeros(2, dtype=torch.long)}
    with torch.no_grad():
        logits = model(batch)
        pairs = model.score_pairs(model.user_side(batch), model.item_side(torch.tensor([3, 4])))
    torch.testing.assert_close(torch.diagonal(pairs), logits)


def test_no_item_representation_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="backbone.item_id_embedding=true"):
        NRMS(_space(tmp_path, []))


@pytest.mark.parametrize("ids", [False, True])
def test_the_backbone_id_switch_is_nrms_switch(tmp_path: Path, ids: bool):
    """One id switch for every model: ``backbone.item_id_embedding`` turns NRMS's item id on or off."""
    from hydra.utils import instantiate

    from conftest import compose_cfg

    cfg = compose_cfg(tmp_path / "run", ["model=nrms", f"backbone.item_id_embedding={str(ids).lower()}"])
    assert "use_item_id" not in cfg.model.builder
    model = instantiate(cfg.model.builder)(_space(tmp_path, ["title"]), None, None)
    assert model.embedding.use_item_id is ids
    assert f"item id {'on' if ids else 'off'}" in model.description
