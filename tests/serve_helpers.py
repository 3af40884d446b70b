"""Serving tests share one recipe: a tiny synthetic run (debug=fast) exported as an artifact."""

from __future__ import annotations

from pathlib import Path

from conftest import compose_cfg, tiny_overrides


def train_tiny(root: Path, overrides: list[str] | None = None) -> Path:
    """A finished tiny 4-scenario synthetic run (seconds); returns its run dir."""
    from unirec_lab.train import train

    cfg = compose_cfg(root / "run", tiny_overrides() + ["debug=fast", "logger=none", "num_threads=1",
                                                        *(overrides or [])])
    train(cfg)
    return Path(cfg.paths.output_dir)


def exported(root: Path, overrides: list[str] | None = None) -> Path:
    """The artifact root of a fresh tiny run."""
    from unirec_lab.serve.export import export_run

    return export_run(train_tiny(root, overrides), root / "artifact")
