"""The installed package carries everything a console script needs: every Python package (the list in
pyproject.toml is explicit because conf/ is mapped to ``unirec_lab.conf``) and every config file."""

from __future__ import annotations

import importlib.resources
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_is_listed_for_the_wheel():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "unirec_lab").rglob("__init__.py")}
    missing = on_disk - listed
    assert not missing, f"packages missing from pyproject.toml [tool.setuptools] packages: {sorted(missing)}"
    assert "unirec_lab.conf" in listed
    assert _pyproject()["tool"]["setuptools"]["package-dir"]["unirec_lab.conf"] == "conf"


def test_configs_resolve_as_package_resources():
    conf = importlib.resources.files("unirec_lab.conf")
    assert conf.joinpath("train.yaml").is_file() and conf.joinpath("prepare.yaml").is_file()
    groups = {p.name for p in (ROOT / "conf").iterdir() if p.is_dir() and not p.name.startswith("__")}
    for g in groups:
        files = sorted(f.name for f in (ROOT / "conf" / g).glob("*.yaml"))
        assert files and all(conf.joinpath(g, f).is_file() for f in files), g


def test_package_data_globs_cover_every_config_file():
    globs = _pyproject()["tool"]["setuptools"]["package-data"]["unirec_lab.conf"]
    conf = ROOT / "conf"
    covered = {p for g in globs for p in conf.glob(g)}
    every = {p for p in conf.rglob("*") if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts}
    assert every <= covered, f"config files the wheel would leave out: {sorted(map(str, every - covered))}"


def test_entry_points_use_the_packaged_configs():
    for mod in ("unirec_lab/train.py", "unirec_lab/cli/prepare.py"):
        text = (ROOT / mod).read_text()
        assert 'config_path="pkg://unirec_lab.conf"' in text, mod
