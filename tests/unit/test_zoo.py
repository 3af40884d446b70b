"""The model zoo on tiny synthetic data: every backbone x head trains, routes gradient per scenario, and
every conf/backbone, conf/head, conf/model file composes and builds."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from unirec_lab.data.datamodule import MultiScenarioDataModule
from unirec_lab.data.synthetic import SyntheticScenario, SyntheticWorld
from unirec_lab.engine.module import RecLitModule
from unirec_lab.engine.optim import LazyAdam
from unirec_lab.models.backbones.encoders import CausalSelfAttention, MeanPooling, TargetAttention
from unirec_lab.models.backbones.shared import SharedBackbone
from unirec_lab.models.builders import build_unified
from unirec_lab.models.heads.mlp import MLPTowers
from unirec_lab.models.heads.mmoe import MMoE
from unirec_lab.models.heads.pepnet import PEPNet
from unirec_lab.models.heads.ple import PLE
from unirec_lab.models.heads.star import STAR
from unirec_lab.models.unified import count_parameters

CONF = Path(__file__).resolve().parents[2] / "conf"
HISTORY_LEN = 8

BACKBONES = {
    "mean": functools.partial(MeanPooling),
    "din": functools.partial(TargetAttention, attention_dims=[16, 8]),
    "sasrec": functools.partial(CausalSelfAttention, max_len=HISTORY_LEN, num_layers=2, num_heads=2, dropout=0.1),
}
HEADS = {
    "mlp": functools.partial(MLPTowers, hidden_dims=[16]),
    "mmoe": functools.partial(MMoE, num_experts=3, expert_dims=[16], tower_dims=[8]),
    "ple": functools.partial(PLE, num_levels=2, shared_experts=2, specific_experts=1, expert_dims=[16],
                             tower_dims=[8]),
    "star": functools.partial(STAR, hidden_dims=[16, 8], aux_dims=[8], extra_inputs=["user", "item"]),
    "pepnet": functools.partial(PEPNet, hidden_dims=[16, 8], gate_hidden_dim=16, scenario_embedding_dim=8),
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is fastest and immune to oversubscription on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def dm(tmp_path_factory: pytest.TempPathFactory) -> MultiScenarioDataModule:
    w = SyntheticWorld(dim=8, num_topics=6, num_segments=5, num_tokens=40, tokens_per_topic=8)
    sources = {
        "a": SyntheticScenario("a", w, num_users=40, num_items=30, rows_per_user=12, label_rate=0.4, seed=1),
        "b": SyntheticScenario("b", w, num_users=30, num_items=25, rows_per_user=10, label_rate=0.3, text_tokens=4,
                               group_by="impression", impression_size=5, seed=2),
        "c": SyntheticScenario("c", w, num_users=20, num_items=15, rows_per_user=8, label_rate=0.5, seed=3),
    }
    d = MultiScenarioDataModule(sources, tmp_path_factory.mktemp("zoo_cache"), batch_size=64, eval_batch_size=256,
                                history_len=HISTORY_LEN)
    d.prepare_data()
    d.setup()
    return d


def _batch(dm: MultiScenarioDataModule, n: int = 64, scenarios: tuple[int, ...] | None = None,
           seed: int = 0) -> dict[str, torch.Tensor]:
    tr = dm.splits["train"]
    rows = torch.arange(len(tr["label"]))
    if scenarios is not None:
        rows = rows[torch.isin(tr["scenario"], torch.tensor(scenarios))]
    g = torch.Generator().manual_seed(seed)
    idx = rows[torch.randperm(len(rows), generator=g)[:n]]
    return {k: v[idx] for k, v in tr.items()}


def _build(dm: MultiScenarioDataModule, backbone: str, head: str) -> torch.nn.Module:
    bb = functools.partial(SharedBackbone, history_encoder=BACKBONES[backbone], embedding_dim=16, trunk_dims=[32])
    return build_unified(dm.space, bb, HEADS[head])


def _loss(module: RecLitModule, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with warnings.catch_warnings():  # self.log() outside a Trainer only warns
        warnings.simplefilter("ignore")
        return module.training_step(batch, 0)


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_backbone_head_trains_and_routes_gradient_per_scenario(dm, backbone: str, head: str) -> None:
    torch.manual_seed(0)
    model = _build(dm, backbone, head)
    assert model.description and count_parameters(model) > 0
    module = RecLitModule(model, functools.partial(LazyAdam, lr=5e-3), dm.scenario_names)
    opt = module.configure_optimizers()
    batch = _batch(dm, 64)
    assert set(batch["scenario"].tolist()) == {0, 1, 2}
    out = model(batch)
    assert out.shape == (64,) and out.dtype == torch.float32

    losses = []
    module.train()
    for _ in range(25):
        loss = _loss(module, batch)
        assert torch.isfinite(loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < losses[0] - 0.02, losses

    # a batch of scenario 0 only: no other scenario's own parameters get any gradient
    only0 = _batch(dm, 32, scenarios=(0,))
    star_stats = ({k: v.clone() for k, v in model.head.norm.named_buffers()}
                  if head == "star" else None)
    opt.zero_grad(set_to_none=True)
    _loss(module, only0).backward()
    own = model.head.scenario_parameters(0)
    assert own, "the head lists no scenario-specific parameters"
    assert any(p.grad is not None and (p.grad if i is None else p.grad[i]).abs().sum() > 0 for _, p, i in own)
    for s in (1, 2):
        for name, p, i in model.head.scenario_parameters(s):
            g = p.grad if p.grad is None or i is None else p.grad[i]
            assert g is None or torch.count_nonzero(g) == 0, f"{name} got gradient from scenario 0 rows"
    if star_stats is not None:  # partitioned norm: only scenario 0's running statistics moved
        now = dict(model.head.norm.named_buffers())
        for k in ("running_mean", "running_var"):
            assert not torch.equal(now[k][0], star_stats[k][0])
            assert torch.equal(now[k][1:], star_stats[k][1:])


def test_scenario_parameters_partition_the_head(dm) -> None:
    """Each scenario's parameters are disjoint from the others' (no head lists a shared tensor as its own)."""
    for head in HEADS:
        model = _build(dm, "mean", head)
        seen: dict[tuple[int, int | None], int] = {}
        for s in range(3):
            for _, p, i in model.head.scenario_parameters(s):
                key = (id(p), i)
                assert key not in seen, f"{head}: a parameter slice is listed for scenarios {seen[key]} and {s}"
                seen[key] = s


@pytest.mark.parametrize("model_name", ["unified", "scenario_as_feature", "mf", "popularity"])
def test_models_fit_through_reclitmodule(dm, model_name: str, tmp_path: Path) -> None:
    """Every wiring runs a real (tiny) Lightning fit + test with the shared LightningModule."""
    from unirec_lab.models import builders

    torch.manual_seed(0)
    bb = functools.partial(SharedBackbone, history_encoder=BACKBONES["mean"], embedding_dim=16, trunk_dims=[32])
    build = {"unified": builders.build_unified, "scenario_as_feature": builders.build_scenario_as_feature,
             "mf": functools.partial(builders.build_mf, embedding_dim=16),
             "popularity": functools.partial(builders.build_popularity, kind="rate", smoothing=5.0)}[model_name]
    model = build(space=dm.space, backbone=bb, head=HEADS["mlp"])
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    module = RecLitModule(model, functools.partial(LazyAdam, lr=1e-2), dm.scenario_names,
                          metrics=["auc", "logloss"])
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=dm)
    trainer.test(module, datamodule=dm, verbose=False)
    assert set(module.test_results) == {"a", "b", "c"}
    assert all(torch.isfinite(torch.tensor(v["logloss"])) for v in module.test_results.values())
    assert any(not torch.equal(before[k], v) for k, v in model.named_parameters()), "nothing was trained"
    if model_name == "popularity":
        assert count_parameters(model) == 2
    if model_name == "scenario_as_feature":  # one head for every row
        assert len(model.head.head.towers) == 1 and model.backbone.scenario_embedding is not None


def test_popularity_training_cannot_change_the_ranking(dm) -> None:
    from unirec_lab.models.builders import build_popularity

    model = build_popularity(dm.space, None, None, kind="rate", smoothing=5.0)
    batch = _batch(dm, 200)
    ref = torch.argsort(model(batch), stable=True)
    with torch.no_grad():
        model.log_scale.fill_(-3.0)
        model.bias.fill_(7.0)
    assert torch.equal(torch.argsort(model(batch), stable=True), ref)


# --------------------------------------------------------------------------------------- config files
def _names(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _pinned_backbone(model_name: str) -> str | None:
    """The backbone a model config sets itself (``override /backbone: X``, e.g. sasrec), else None."""
    for line in (CONF / "model" / f"{model_name}.yaml").read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("- override /backbone:"):
            return line.split(":", 1)[1].strip()
    return None


@pytest.fixture()
def hydra_conf(tmp_path: Path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        def _compose(*overrides: str):
            cfg = compose("train", overrides=[f"hydra.run.dir={tmp_path}", *overrides], return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)
            return cfg
        yield _compose
    GlobalHydra.instance().clear()


def test_config_groups_are_complete() -> None:
    assert {"mean", "din", "sasrec"} <= set(_names("backbone"))
    assert {"mlp", "mmoe", "ple", "star", "pepnet"} <= set(_names("head"))
    assert {"sarnet", "m2m", "adasparse", "adaptdhm", "epnet", "ppnet", "hamur", "m3oe"} <= set(_names("head"))
    assert {"unified", "per_scenario", "scenario_as_feature", "mf", "popularity"} <= set(_names("model"))


@pytest.mark.slow  # builds every head x backbone: 17 s idle, ~65 s on a loaded machine
def test_every_config_composes_and_builds(dm, hydra_conf) -> None:
    batch = _batch(dm, 32)
    descriptions = set()
    for model_name in _names("model"):
        uses_nets = model_name not in ("mf", "popularity")  # these ignore the backbone and head configs
        pinned = _pinned_backbone(model_name)
        for backbone in ([pinned] if pinned else _names("backbone")) if uses_nets else ["mean"]:
            for head in _names("head") if uses_nets else ["mlp"]:
                cfg = hydra_conf(f"backbone={backbone}", f"head={head}", f"model={model_name}")
                assert cfg.model.name and cfg.model.mode in ("joint", "separate")
                model = instantiate(cfg.model.builder)(space=dm.space, backbone=instantiate(cfg.backbone),
                                                       head=instantiate(cfg.head))
                assert isinstance(model.description, str) and model.description
                assert count_parameters(model) > 0
                with torch.no_grad():
                    out = model.eval()(batch)
                assert out.shape == (32,) and torch.isfinite(out).all(), (model_name, backbone, head)
                descriptions.add(model.description)
    assert len(descriptions) >= len(_names("backbone")) * len(_names("head")) + 2


@pytest.mark.parametrize("override", ["+head.hiden_dims=[8]", "+backbone.embeding_dim=8",
                                      "+backbone.history_encoder.num_head=2", "+model.builder.bais=false"])
def test_config_typo_fails_at_build(dm, hydra_conf, override: str) -> None:
    enc = "backbone=sasrec" if "history_encoder" in override else "backbone=mean"
    model = "model=mf" if "builder" in override else "model=unified"
    cfg = hydra_conf(enc, model, override)
    with pytest.raises((TypeError, InstantiationException)):
        instantiate(cfg.model.builder)(space=dm.space, backbone=instantiate(cfg.backbone),
                                       head=instantiate(cfg.head))


def test_unknown_head_extra_input_fails_at_build(dm, hydra_conf) -> None:
    cfg = hydra_conf("head=star", "head.extra_inputs=[user,itme]")
    with pytest.raises(ValueError, match="itme"):
        instantiate(cfg.model.builder)(space=dm.space, backbone=instantiate(cfg.backbone),
                                       head=instantiate(cfg.head))


def test_a_key_the_class_does_not_take_is_one_config_error(dm, hydra_conf) -> None:
    """model=sasrec sets its encoder's keys; with another backbone the user gets one line naming the key."""
    from unirec_lab.engine.build import build_model
    from unirec_lab.engine.config import ConfigError

    cfg = hydra_conf("model=sasrec", "backbone=din")
    with pytest.raises(ConfigError, match=r"unexpected keyword argument 'num_layers'.*set their own backbone"):
        build_model(cfg, dm.space)
