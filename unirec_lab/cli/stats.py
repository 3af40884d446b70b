"""Statistics table of prepared scenario bundles, read from their ``stats.json`` / ``feature_spec.json`` only
(no parquet is loaded, so it is instant).

    python -m unirec_lab.cli.stats .cache/bundles             # every complete bundle under a cache dir
    python -m unirec_lab.cli.stats .cache/bundles/news/<key>  # one bundle
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from unirec_lab.data.prepare import is_complete
from unirec_lab.data.schema import BundleError

COLUMNS = [("scenario", "scenario"), ("dataset", "dataset"), ("users", "users"), ("items", "items"),
           ("rows", "rows"), ("positives", "positives"), ("density", "density"), ("pos_density", "pos density"),
           ("label_rate", "label rate"), ("groups", "groups"), ("mean_history_len", "mean hist len"),
           ("build_s", "build s"), ("seconds", "prepare s"), ("cached", "cached")]


def bundle_row(path: Path | str, seconds: float | None = None, cached: bool | None = None) -> dict[str, Any]:
    """One table row for a bundle directory. ``seconds`` / ``cached``: this run's prepare time and cache hit."""
    path = Path(path)
    try:
        stats = json.loads((path / "stats.json").read_text())
        spec = json.loads((path / "feature_spec.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BundleError(f"{path}: cannot read stats.json / feature_spec.json ({e})") from None
    prov = stats.get("provenance", {})
    nu, ni = int(stats.get("num_users", 0)), int(stats.get("num_items", 0))
    hist = prov.get("mean_history_len")
    if hist is None:  # bundles from sources that do not record it (synthetic): count from the parquet
        hist = _mean_history_len(path)
    return {
        "scenario": stats.get("scenario", path.parent.name),
        "dataset": spec.get("extra", {}).get("dataset", prov.get("generator", "")),
        "users": nu, "items": ni, "rows": int(stats.get("rows", 0)), "positives": int(stats.get("positives", 0)),
        "density": float(stats.get("density", 0.0)),
        "pos_density": float(stats.get("positives", 0)) / max(1, nu * ni),
        "label_rate": float(stats.get("label_rate", 0.0)), "groups": stats.get("groups"),
        "mean_history_len": hist, "build_s": prov.get("prepare_seconds"), "seconds": seconds, "cached": cached,
        "path": str(path),
    }


def _mean_history_len(path: Path) -> float | None:
    import pandas as pd

    from unirec_lab.data.history import STATS_HISTORY_LEN, mean_history_len

    try:
        cols = pd.read_parquet(path / "interactions.parquet").columns
        use = [c for c in ("user", "item", "label", "ts", "split", "history") if c in cols]
        return mean_history_len(pd.read_parquet(path / "interactions.parquet", columns=use), STATS_HISTORY_LEN)
    except (OSError, ValueError, KeyError):
        return None


def _fmt(key: str, v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if key in ("density", "pos_density"):
        return f"{v:.2e}"
    if key == "label_rate":
        return f"{v:.4f}"
    if key == "mean_history_len":
        return f"{v:.2f}"
    if key in ("build_s", "seconds"):
        return f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def stats_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of :func:`bundle_row` rows (mean hist len: capped at 20, the data module's default)."""
    header = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    sep = "|" + "|".join("---" if k in ("scenario", "dataset") else "---:" for k, _ in COLUMNS) + "|"
    body = ["| " + " | ".join(_fmt(k, r.get(k)) for k, _ in COLUMNS) + " |" for r in rows]
    return "\n".join([header, sep, *body])


def render_stats(bundle_dirs: list[Path | str]) -> str:
    """The statistics table of the given bundle directories (what ``unirec-prepare`` prints, without timings)."""
    return stats_table([bundle_row(d) for d in bundle_dirs])


def find_bundles(path: Path | str) -> list[Path]:
    """``path`` itself if it is a complete bundle, else every complete bundle below it (sorted); hidden entries
    (temp dirs, superseded versions) are skipped, the symlinks naming the current versions are followed."""
    path = Path(path)
    if is_complete(path):
        return [path]
    found = []
    for root, dirs, _ in os.walk(path):  # lists symlinked dirs without descending into them
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / d for d in dirs if is_complete(Path(root) / d)]
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unirec_lab.cli.stats", description="Statistics of bundles.")
    ap.add_argument("paths", nargs="+", type=Path, help="bundle directories or cache directories")
    args = ap.parse_args(argv)
    dirs = [d for p in args.paths for d in find_bundles(p)]
    if not dirs:
        print(f"error: no complete bundle under {', '.join(map(str, args.paths))}", file=sys.stderr)
        return 1
    try:
        print(render_stats(dirs))
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
