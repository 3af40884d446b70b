"""``unirec-prepare``: build (or find cached) the bundles of the selected scenarios and print their statistics.

    unirec-prepare scenario=real                 # Beauty, Ciao, ASSISTments 2009, MIND
    unirec-prepare scenario=[news_bing,social]   # any selection of conf/scenario/*.yaml
    python -m unirec_lab.cli.prepare scenario=education force=true

Bundles are cached under ``cache_dir/<scenario>/<fingerprint>``; the fingerprint holds the raw files' sha256 and
every prepare parameter, so a re-run with unchanged inputs only hashes the raw files. Each bundle's derived arrays
for ``history_len`` (ids, split levels, groups, histories: ``data/derived.py``) are built here too, so a job
memory-maps them. A failure (missing raw
data, sha256 mismatch, unparsable line, ...) prints one line naming the file and exits with status 1; no
partial bundle is left behind.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from unirec_lab.cli.stats import bundle_row, stats_table
from unirec_lab.data.derived import ensure_derived
from unirec_lab.data.history import history_settings
from unirec_lab.data.prepare import ensure_bundle
from unirec_lab.data.schema import BundleError
from unirec_lab.engine.config import missing_package_message

log = logging.getLogger("unirec_lab.prepare")


def prepare_all(cfg: DictConfig) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Prepare every scenario in ``cfg.scenarios``; returns (stats rows, ``{scenario: error}``)."""
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    cache_dir = Path(cfg.cache_dir)
    if isinstance(cfg.get("scenario"), DictConfig) and len(cfg.scenario):  # a YAML without its @package line
        return rows, {"scenario": missing_package_message(cfg)}
    if not cfg.get("scenarios"):
        return rows, {"scenarios": "none selected; pick e.g. scenario=real or scenario=news"}
    hl = cfg.get("history_len")
    if hl is not None and (isinstance(hl, bool) or not isinstance(hl, int) or hl < 0):
        return rows, {"history_len": f"history_len={hl!r}: expected an integer >= 0 (the data.history_len of the "
                                     "jobs to prepare for) or null to skip the derived arrays"}
    for key in cfg.scenarios:
        t0 = time.perf_counter()
        try:
            source = hydra.utils.instantiate(cfg.scenarios[key].source)
            prepared = ensure_bundle(source, cache_dir, force=bool(cfg.force))
            path, cached = prepared.path, not prepared.built
            if cfg.get("history_len") is not None:  # what a cached job memory-maps instead of rebuilding
                settings = history_settings(str(key), cfg.scenarios[key].get("history"))
                ensure_derived(path, int(cfg.history_len), settings["feedback"], settings["eval_chunk"])
        except BundleError as e:
            errors[str(key)] = str(e)
            log.error("%s: %s", key, e)
            continue
        rows.append(bundle_row(path, seconds=time.perf_counter() - t0, cached=cached))
        log.info("%s: %s (%s)", key, path, "cached" if cached else "built")
    return rows, errors


@hydra.main(version_base="1.3", config_path="pkg://unirec_lab.conf", config_name="prepare")
def main(cfg: DictConfig) -> None:
    t0 = time.perf_counter()
    rows, errors = prepare_all(cfg)
    if rows:
        print(stats_table(rows))
        print(f"total {time.perf_counter() - t0:.2f}s; bundles under {cfg.cache_dir}")
    for key, msg in errors.items():
        print(f"error: {key}: {msg}", file=sys.stderr)
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
