"""Config checks that fail fast with one clear line, and the curated flat config loggers record."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from unirec_lab.data.history import history_settings
from unirec_lab.data.val_subset import check_budget
from unirec_lab.evaluation.metrics import metric_fn
from unirec_lab.utils.rundir import check_experiment_name


class ConfigError(ValueError):
    """A config value is invalid; the message names the key, the value and what was expected."""


def check_config(cfg: DictConfig) -> None:
    if isinstance(cfg.get("scenario"), DictConfig) and len(cfg.scenario):  # (a defaults-only file leaves {})
        raise ConfigError(missing_package_message(cfg))
    if not cfg.get("scenarios"):
        raise ConfigError("scenarios: the scenario list is empty; select e.g. scenario=synthetic or scenario=news")
    for k in cfg.scenarios:
        if "source" not in cfg.scenarios[k]:
            raise ConfigError(f"scenarios.{k}: no 'source' node (is conf/scenario/{k}.yaml a scenario config?)")
        try:
            history_settings(k, cfg.scenarios[k].get("history"))
        except ValueError as e:
            raise ConfigError(str(e)) from None
    if cfg.model.mode not in ("joint", "separate"):
        raise ConfigError(f"model.mode={cfg.model.mode!r}, expected 'joint' or 'separate'")
    for m in cfg.metrics:
        metric_fn(str(m))
    if not cfg.selection.monitor.startswith("val/"):
        raise ConfigError(f"selection.monitor={cfg.selection.monitor!r}: select on validation metrics only")
    scope = cfg.selection.get("scope", "global")
    if scope not in ("global", "per_scenario"):
        raise ConfigError(f"selection.scope={scope!r}, expected 'global' or 'per_scenario'")
    if scope == "per_scenario":
        selection_metric(cfg)
    fr = cfg.get("full_ranking") or {}
    unknown = [k for k in (fr.get("scenarios") or []) if k not in cfg.scenarios]
    if unknown:
        raise ConfigError(f"full_ranking.scenarios={unknown}: not among the selected scenarios {list(cfg.scenarios)}")
    _int("full_ranking.candidates", fr.get("candidates"), 1, null_ok=True)
    lr = cfg.optimizer.get("lr")
    if lr is not None and not float(lr) > 0:
        raise ConfigError(f"optimizer.lr={lr}, expected a positive number")
    check_run_values(cfg)


def _int(key: str, value: Any, lo: int, hi: int | None = None, null_ok: bool = False) -> None:
    """``key=value`` must be an integer in ``[lo, hi]`` (or null when ``null_ok``)."""
    if value is None and null_ok:
        return
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= lo and (hi is None or value <= hi)
    if not ok:
        expected = f"an integer in [{lo}, {hi}]" if hi is not None else \
            ("a positive integer" if lo == 1 else f"an integer >= {lo}")
        raise ConfigError(f"{key}={value}, expected {expected}{' or null' if null_ok else ''}")


def check_run_values(cfg: DictConfig) -> None:
    """Numbers checked before any data is prepared: each bad one names its key."""
    check_experiment_name(cfg.get("experiment_name", "default"))
    _int("seed", cfg.get("seed"), 0, 2 ** 32 - 1)
    _int("num_threads", cfg.get("num_threads"), 1, null_ok=True)
    _int("trainer.max_epochs", cfg.trainer.get("max_epochs"), 1)
    _int("data.batch_size", cfg.data.get("batch_size"), 1)
    _int("data.history_len", cfg.data.get("history_len"), 0)
    check_budget(cfg.data.get("val_budget"))
    if "val_subset_seed" in cfg.data:
        _int("data.val_subset_seed", cfg.data.val_subset_seed, 0)
    if cfg.backbone.get("embedding_dim") is not None:
        _int("backbone.embedding_dim", cfg.backbone.embedding_dim, 1)


_PACKAGE = re.compile(r"^\s*#\s*@package\b")


def _has_package_header(path: Path) -> bool:
    """Hydra reads ``# @package`` only from the comment lines at the top of a file."""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if _PACKAGE.match(line):
            return True
        if line.strip() and not line.lstrip().startswith("#"):
            return False
    return False


def missing_package_message(cfg: DictConfig) -> str:
    """A scenario YAML without ``# @package scenarios.<name>`` lands under ``scenario`` (Hydra's default package
    for the group) instead of ``scenarios.<name>``: name the file(s) and the exact line to add."""
    from hydra.core.hydra_config import HydraConfig

    names: list[str] = []
    dirs: list[Path] = []
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        for o in hc.overrides.task:
            key, _, value = str(o).partition("=")
            if key.lstrip("+~") == "scenario":
                names += [n.strip() for n in value.strip("[]").split(",") if n.strip()]
        dirs = [Path(s.path) / "scenario" for s in hc.runtime.config_sources if s.schema == "file"]
    src_name = cfg.scenario.get("source", {}).get("name") if isinstance(cfg.scenario, DictConfig) else None
    candidates = [d / f"{n}.yaml" for d in dirs for n in (names or [src_name]) if n]
    bad = [p for p in candidates if p.is_file() and not _has_package_header(p)]
    if bad:
        return "; ".join(f"{p}: add '# @package scenarios.{p.stem}' as its first line" for p in bad) + \
            " (without it the file's keys land under 'scenario', not 'scenarios.<name>', and the scenario is ignored)"
    name = src_name or "<name>"
    return (f"scenario: a scenario config was composed without its package line, so its keys landed under 'scenario'; "
            f"add '# @package scenarios.{name}' as the first line of conf/scenario/{name}.yaml")


def selection_metric(cfg: DictConfig) -> str:
    """``val/mean/auc`` -> ``auc``: the metric per-scenario selection monitors as ``val/<scenario>/auc``."""
    parts = str(cfg.selection.monitor).split("/")
    if len(parts) != 3 or parts[1] != "mean" or parts[2] not in cfg.metrics:
        raise ConfigError(f"selection.monitor={cfg.selection.monitor!r}: per-scenario selection needs "
                          f"val/mean/<metric> with <metric> in metrics={list(cfg.metrics)}")
    return parts[2]


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The job's config with every interpolation resolved (Hydra's own node excluded)."""
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)


def flat_config(cfg: DictConfig, keys: tuple[str, ...] = ("seed", "model", "backbone", "head", "optimizer",
                                                             "data", "trainer", "metrics", "selection")) -> dict[str, Any]:
    """``{"backbone.embedding_dim": 32, ...}``: the knobs worth filtering on in a dashboard."""
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("_partial_",):
                    continue
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(node, list):
            out[prefix] = ",".join(map(str, node))
        else:
            out[prefix] = node

    container = resolved_config(cfg)
    for k in keys:
        if k in container:
            walk(k, container[k])
    out["scenarios"] = ",".join(cfg.scenarios)
    return out
