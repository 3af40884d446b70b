"""unirec-report --published: ours vs a published table (the reproductions), relabelled rows, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from unirec_lab.cli.report import main
from unirec_lab.results.published import PublishedError, load_published

PUB = """source: "paper, Table 2"
target: 0.02
rows:
  - {label: Beauty, scenario: shop, where: {source.category: Beauty}, metrics: {hr@10: 0.47, mrr: 0.28}}
  - {label: Toys, scenario: shop, where: {source.category: Toys}, metrics: {hr@10: 0.46}}
"""


def _run(root: Path, cat: str, seed: int, hr: float, mrr: float) -> None:
    d = root / f"{cat}_s{seed}"
    d.mkdir(parents=True)
    cfg = {"seed": seed, "model": {"name": "sasrec"}, "scenarios": {"shop": {"source": {"category": cat}}}}
    rec = {"status": "completed", "model": "sasrec", "mode": "separate", "scenarios": ["shop"], "seed": seed,
           "config": cfg, "git_sha": "abc", "experiment": "repro",
           "test": {"shop": {"hr@10": hr, "mrr": mrr, "rows": 100}}}
    (d / "result.json").write_text(json.dumps({"schema_version": 1, **rec}))


def test_published_comparison_and_relabelled_rows(tmp_path, capsys):
    runs = tmp_path / "runs"
    for seed, (hb, hm, ht) in enumerate([(0.48, 0.29, 0.50), (0.46, 0.27, 0.52)], 1):
        _run(runs, "Beauty", seed, hb, hm)
        _run(runs, "Toys", seed, ht, 0.3)
    (tmp_path / "pub.yaml").write_text(PUB)
    out = tmp_path / "out"
    assert main([str(runs), "--baseline", "sasrec", "--metrics", "hr@10,mrr", "--format", "md,csv",
                 "--published", str(tmp_path / "pub.yaml"), "--out", str(out)]) == 0
    md = (out / "table.md").read_text()
    assert "| shop[Beauty] | sasrec" in md and "| shop[Toys]   | sasrec" in md and "shop#1" not in md
    # Beauty: hr@10 mean 0.47 (diff 0), mrr 0.28 (diff 0); Toys: hr@10 mean 0.51 (diff +0.05, outside ±0.02)
    assert "**2 of 3 published values within ±0.02**; largest gap +0.0500 (Toys hr@10, sasrec)." in md
    pub = pd.read_csv(out / "published.csv")
    assert pub["within"].tolist() == [True, True, False]
    assert pub["difference"].round(6).tolist() == [0.0, 0.0, 0.05]
    table = pd.read_csv(out / "table.csv")
    assert set(table["scenario"]) == {"shop[Beauty]", "shop[Toys]"}
    capsys.readouterr()
    (tmp_path / "bad.yaml").write_text(PUB.replace("target: 0.02", "target: -1"))
    assert main([str(runs), "--published", str(tmp_path / "bad.yaml")]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'bad.yaml'}: target=-1, expected a positive number\n"


@pytest.mark.parametrize("text,msg", [
    ("rows: []\ntarget: 1", "expected a mapping with 'source', 'target' and a non-empty list 'rows'"),
    ("target: 0.1\nrows: [{label: a, scenario: s}]", "rows[0]: expected a mapping with label, scenario, metrics"),
    ("target: 0.1\nrows: [{label: a, scenario: s, metrics: {mrr: x}}]", "rows[0].metrics={'mrr': 'x'}: expected"),
])
def test_bad_published_files_are_one_line(tmp_path, text, msg):
    p = tmp_path / "p.yaml"
    p.write_text(text)
    with pytest.raises(PublishedError) as e:
        load_published(p)
    assert str(e.value).startswith(f"{p}: ") and msg in str(e.value) and "\n" not in str(e.value)
