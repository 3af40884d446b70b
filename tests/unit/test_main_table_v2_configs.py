"""The main table v2 rows are configs of the one framework on the main table's own protocol: every `strongest`
model and `unified_seq` reads the same bundles (scenario source configs), metrics and selection as main_real,
and differs only in model keys (model, backbone, objectives, history settings) and its training recipe."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from conftest import compose_cfg

STRONGEST = {  # scenario -> (model builder, history encoder, objectives, history feedback)
    "ecommerce": ("build_sasrec", "CausalSelfAttention", ["next_item"], "positives"),
    "education": ("build_unified", "RecurrentEncoder", ["next_response"], "all"),
    "social": ("build_unified", "MeanPooling", [], "all"),  # TrustSVD-style: mean of item ⊕ liked / not liked
    "news": ("build_unified", "TargetAttention", [], "positives"),
}


def _plain(node):
    return OmegaConf.to_container(node, resolve=False)


@pytest.mark.parametrize("scenario", sorted(STRONGEST))
def test_strongest_runs_on_the_main_table_protocol(scenario, tmp_path):
    main = compose_cfg(tmp_path / "main", ["experiment=main_real"])
    cfg = compose_cfg(tmp_path / "s", [f"experiment=strongest_{scenario}"])
    builder, encoder, objectives, feedback = STRONGEST[scenario]
    assert list(cfg.scenarios) == [scenario] and cfg.model.name == "strongest"
    assert cfg.experiment_name == main.experiment_name  # one table
    # the same bundle and split: the scenario's source config is main_real's, key for key
    assert _plain(cfg.scenarios[scenario].source) == _plain(main.scenarios[scenario].source)
    assert list(cfg.metrics) == list(main.metrics) and cfg.selection.scope == main.selection.scope
    assert cfg.model.builder._target_.endswith(builder)
    assert cfg.backbone.history_encoder._target_.endswith(encoder)
    assert sorted(cfg.objectives or {}) == objectives
    assert (cfg.scenarios[scenario].get("history") or {}).get("feedback", "positives") == feedback


def test_unified_seq_row_objectives_and_feedback(tmp_path):
    main = compose_cfg(tmp_path / "main", ["experiment=main_real"])
    cfg = compose_cfg(tmp_path / "u", ["experiment=main_unified_seq"])
    assert cfg.model.name == "unified_seq" and cfg.model.mode == "joint" and cfg.backbone.feedback_embedding
    assert cfg.backbone.history_encoder._target_.endswith("CausalSelfAttention")
    assert list(cfg.objectives.next_item.scenarios) == ["ecommerce", "news"]
    assert list(cfg.objectives.next_response.scenarios) == ["education", "social"]
    for s in main.scenarios:
        assert _plain(cfg.scenarios[s].source) == _plain(main.scenarios[s].source)
        want = "all" if s in ("education", "social") else "positives"
        assert (cfg.scenarios[s].get("history") or {}).get("feedback", "positives") == want
    assert cfg.selection.scope == "per_scenario"


def test_unified_fb_row_differs_from_unified_only_in_its_histories(tmp_path):
    unified = compose_cfg(tmp_path / "u", ["experiment=main_real", "model=unified"])
    cfg = compose_cfg(tmp_path / "fb", ["experiment=main_unified_fb"])
    assert cfg.model.name == "unified_fb" and cfg.backbone.feedback_embedding and not unified.backbone.feedback_embedding
    assert cfg.backbone.history_encoder._target_ == unified.backbone.history_encoder._target_
    assert cfg.selection.scope == "per_scenario" and not cfg.objectives
    for s in unified.scenarios:
        assert _plain(cfg.scenarios[s].source) == _plain(unified.scenarios[s].source)
        want = "all" if s in ("education", "social") else "positives"
        assert (cfg.scenarios[s].get("history") or {}).get("feedback", "positives") == want
