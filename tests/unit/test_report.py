"""unirec-report on hand-made result.json files: statistics, gains, paired tests, grouping, failures, outputs."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from unirec_lab.cli.report import main
from unirec_lab.results.aggregate import aggregate
from unirec_lab.results.report import render_latex, render_markdown
from unirec_lab.results.runs import find_run_dirs, load_runs

SCENARIOS = ("ecommerce", "news")


def write_run(root: Path, name: str, model: str, seed: int, test: dict[str, dict[str, float]], *,
              cfg: dict[str, Any] | None = None, scen_cfg: dict[str, dict[str, Any]] | None = None,
              mode: str | None = None, **extra: Any) -> Path:
    """A minimal valid result.json (the keys report reads, shaped like unirec_lab.train's)."""
    run = root / name
    (run / ".hydra").mkdir(parents=True, exist_ok=True)
    mode = mode or ("separate" if model == "per_scenario" else "joint")
    config = {"seed": seed, "experiment_name": "t",
              "model": {"name": model, "mode": mode, "builder": {"_target_": "x.build"}},
              "backbone": {"embedding_dim": 32}, "head": {"hidden_dims": [32]},
              "optimizer": {"lr": 0.002}, "data": {"batch_size": 1024, "shuffle_seed": seed,
                                                   "cache_dir": f"/somewhere/{name}/.cache"},
              "paths": {"output_dir": str(run), "root_dir": "/repo"}, "logger": {"_target_": None},
              "scenarios": {s: {"source": {"name": s, "num_users": 100, "raw_dir": f"/data/{name}"},
                                "loss_weight": 1.0} for s in test}}
    for key, value in (cfg or {}).items():  # dotted overrides
        node = config
        *path, last = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    for s, sub in (scen_cfg or {}).items():
        config["scenarios"][s]["source"].update(sub)
    record = {"result_version": 1, "status": "completed", "model": model, "mode": mode, "seed": seed,
              "experiment": "t", "scenarios": list(test), "overrides": [f"model={model}", f"seed={seed}"],
              "config": config, "git_sha": "abc", "num_parameters": 10, "wall_seconds": 1.0,
              "test": {s: {**m, "rows": 100} for s, m in test.items()}, **extra}
    (run / "result.json").write_text(json.dumps(record))
    return run


def metrics(auc: float, logloss: float) -> dict[str, float]:
    return {"auc": auc, "logloss": logloss, "gauc": auc - 0.01, "ndcg@10": auc / 2}


@pytest.fixture
def sweep(tmp_path: Path) -> dict[str, Any]:
    """3 seeds x {per_scenario, unified} on two scenarios; unified better by ~+0.02 AUC / -0.01 logloss."""
    rng = np.random.default_rng(0)
    vals: dict[tuple[str, int, str], tuple[float, float]] = {}
    for seed in (1, 2, 3):
        for model, shift in (("per_scenario", 0.0), ("unified", 1.0)):
            test = {}
            for s, base in zip(SCENARIOS, (0.70, 0.60)):
                auc = base + 0.02 * shift + float(rng.normal(0, 0.002))
                ll = 0.50 - 0.01 * shift + float(rng.normal(0, 0.002))
                vals[(model, seed, s)] = (auc, ll)
                test[s] = metrics(auc, ll)
            write_run(tmp_path / "runs", f"{model}-s{seed}", model, seed, test)
    return {"root": tmp_path / "runs", "vals": vals}


def cell(agg, model: str, scenario: str, metric: str, group: str = "A") -> pd.Series:
    t = agg.table
    rows = t[(t.group == group) & (t.model == model) & (t.scenario == scenario) & (t.metric == metric)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_mean_std_n_gain_and_paired_test(sweep):
    runs, failures = load_runs([sweep["root"]])
    assert len(runs) == 6 and failures == []
    agg = aggregate(runs, failures)
    assert [g.name for g in agg.groups] == ["A"]  # per-run paths and the seed-derived shuffle_seed don't split
    vals = sweep["vals"]
    for s in SCENARIOS:
        for k, metric in enumerate(("auc", "logloss")):
            per = {m: np.array([vals[(m, seed, s)][k] for seed in (1, 2, 3)]) for m in ("per_scenario", "unified")}
            for m, x in per.items():
                c = cell(agg, m, s, metric)
                assert c["n"] == 3
                assert c["mean"] == pytest.approx(x.mean(), rel=1e-12)
                assert c["std"] == pytest.approx(x.std(ddof=1), rel=1e-12)
            c = cell(agg, "unified", s, metric)
            b, u = per["per_scenario"].mean(), per["unified"].mean()
            gain = (u - b) / b if metric == "auc" else (b - u) / b  # positive = better for logloss too
            assert c["gain"] == pytest.approx(gain, rel=1e-12) and c["gain"] > 0
            assert c["p_value"] == pytest.approx(stats.ttest_rel(per["unified"], per["per_scenario"]).pvalue,
                                                 rel=1e-12)
            assert c["n_pairs"] == 3 and bool(c["significant"]) == (c["p_value"] < 0.05)
            assert np.isnan(cell(agg, "per_scenario", s, metric)["gain"])
    assert cell(agg, "unified", "ecommerce", "auc")["significant"]
    assert cell(agg, "unified", "ecommerce", "auc")["best"]
    assert cell(agg, "unified", "ecommerce", "logloss")["best"]  # lowest logloss is best
    assert not cell(agg, "per_scenario", "ecommerce", "logloss")["best"]


def test_significance_marking_and_alpha(sweep, tmp_path):
    root = sweep["root"]
    # a third model that is no better than the baseline: same values + symmetric noise
    for seed, d in ((1, 0.01), (2, -0.012), (3, 0.003)):
        test = {s: metrics(sweep["vals"][("per_scenario", seed, s)][0] + d, sweep["vals"][("per_scenario", seed, s)][1])
                for s in SCENARIOS}
        write_run(root, f"noisy-s{seed}", "noisy", seed, test)
    agg = aggregate(*load_runs([root]))
    assert not cell(agg, "noisy", "ecommerce", "auc")["significant"]
    md = render_markdown(agg)
    line = next(ln for ln in md.splitlines() if ln.startswith("| ecommerce") and "| unified" in ln)
    assert "†" in line.split("|")[5]  # Δ auc cell of the significant model
    line = next(ln for ln in md.splitlines() if "| noisy" in ln)
    assert "†" not in line.split("|")[5]
    strict = aggregate(*load_runs([root]), alpha=1e-12)
    assert not strict.table["significant"].any()


def test_single_seed_has_blank_std_and_no_pvalue(tmp_path):
    write_run(tmp_path, "b", "per_scenario", 1, {"news": metrics(0.6, 0.5)})
    write_run(tmp_path, "u", "unified", 1, {"news": metrics(0.63, 0.45)})
    agg = aggregate(*load_runs([tmp_path]))
    c = cell(agg, "unified", "news", "auc")
    assert c["n"] == 1 and np.isnan(c["std"]) and np.isnan(c["p_value"]) and not c["significant"]
    assert c["gain"] == pytest.approx(0.05) and "need >= 2" in c["note"]
    assert "+5.00% (p n/a)" in render_markdown(agg)


def test_wilcoxon_from_six_pairs(tmp_path):
    rng = np.random.default_rng(1)
    b, u = rng.normal(0.6, 0.01, 6), rng.normal(0.62, 0.01, 6)
    for seed in range(6):
        write_run(tmp_path, f"b{seed}", "per_scenario", seed, {"news": metrics(b[seed], 0.5)})
        write_run(tmp_path, f"u{seed}", "unified", seed, {"news": metrics(u[seed], 0.5)})
    c = cell(aggregate(*load_runs([tmp_path])), "unified", "news", "auc")
    assert c["p_wilcoxon"] == pytest.approx(stats.wilcoxon(u, b).pvalue)
    assert c["p_value"] == pytest.approx(stats.ttest_rel(u, b).pvalue)


def test_pairs_by_seed_only(tmp_path):
    for seed, v in ((1, 0.60), (2, 0.61), (3, 0.62)):
        write_run(tmp_path, f"b{seed}", "per_scenario", seed, {"news": metrics(v, 0.5)})
    for seed, v in ((2, 0.64), (3, 0.66), (4, 0.9)):  # seed 4 has no partner
        write_run(tmp_path, f"u{seed}", "unified", seed, {"news": metrics(v, 0.5)})
    c = cell(aggregate(*load_runs([tmp_path])), "unified", "news", "auc")
    assert c["n"] == 3 and c["n_pairs"] == 2
    assert c["p_value"] == pytest.approx(stats.ttest_rel([0.64, 0.66], [0.61, 0.62]).pvalue)


def test_differing_configs_are_separate_groups_or_refused(sweep, capsys):
    root = sweep["root"]
    for seed in (1, 2):
        write_run(root, f"lr-b{seed}", "per_scenario", seed, {"news": metrics(0.5, 0.6)}, cfg={"optimizer.lr": 0.1})
        write_run(root, f"lr-u{seed}", "unified", seed, {"news": metrics(0.55, 0.6)}, cfg={"optimizer.lr": 0.1})
    agg = aggregate(*load_runs([root]))
    assert [(g.name, g.n_runs) for g in agg.groups] == [("A", 6), ("B", 4)]
    assert agg.groups[0].differing == {"optimizer.lr": 0.002} and agg.groups[1].differing == {"optimizer.lr": 0.1}
    assert cell(agg, "unified", "news", "auc", group="B")["mean"] == pytest.approx(0.55)
    assert cell(agg, "unified", "news", "auc", group="A")["n"] == 3  # never pooled with group B
    md = render_markdown(agg)
    assert "## Group A" in md and "## Group B" in md and "optimizer.lr=0.1" in md

    assert main([str(root), "--strict"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "optimizer.lr" in err and "--strict" in err
    assert main([str(root), "--strict", "--ignore-key", "optimizer.lr"]) == 0


def test_model_keys_scenario_sets_and_variants(tmp_path):
    for seed in (1, 2):
        write_run(tmp_path, f"b{seed}", "per_scenario", seed, {"news": metrics(0.6, 0.5), "social": metrics(0.7, 0.4)})
        # the unified model on a subset of the baseline's scenarios, with another embedding size
        write_run(tmp_path, f"u{seed}", "unified", seed, {"news": metrics(0.62, 0.5)}, cfg={"backbone.embedding_dim": 64})
        write_run(tmp_path, f"v{seed}", "unified", seed, {"news": metrics(0.61, 0.5), "social": metrics(0.7, 0.4)})
        # only the model has this scenario
        write_run(tmp_path, f"w{seed}", "other", seed, {"ecommerce": metrics(0.8, 0.3)})
    agg = aggregate(*load_runs([tmp_path]))
    assert len(agg.groups) == 1  # model keys, scenario set and per-run paths do not split groups
    labels = set(agg.table["model"])
    assert "per_scenario" in labels and "other" in labels
    assert 'unified[backbone.embedding_dim=64,scenarios=news]' in labels
    assert 'unified[backbone.embedding_dim=32,scenarios=news+social]' in labels
    c = cell(agg, "unified[backbone.embedding_dim=64,scenarios=news]", "social", "auc")
    assert c["n"] == 0 and np.isnan(c["mean"]) and c["note"] == "no runs"
    assert cell(agg, "other", "ecommerce", "auc")["note"] == "no baseline runs for this scenario"
    assert "n/a" in render_markdown(agg)

    # the same scenario with different data configs: separate rows, listed in the header
    write_run(tmp_path, "b9", "per_scenario", 9, {"news": metrics(0.6, 0.5)}, scen_cfg={"news": {"num_users": 7}})
    agg = aggregate(*load_runs([tmp_path]))
    assert {"news#1", "news#2"} <= set(agg.table["scenario"])
    assert "scenario variant news#2: source.num_users=7" in render_markdown(agg)
    with pytest.raises(ValueError, match="news"):
        aggregate(*load_runs([tmp_path]), strict=True)


def test_failed_incomplete_superseded_runs_are_reported(sweep, tmp_path, capsys):
    root = sweep["root"]
    (root / "crashed").mkdir()
    (root / "crashed" / "failure.json").write_text(json.dumps(
        {"status": "failed", "error": "Traceback ...\nRuntimeError: CUDA out of memory", "overrides": ["seed=9"]}))
    (root / "killed" / ".hydra").mkdir(parents=True)
    (root / "killed" / ".hydra" / "overrides.yaml").write_text("- model=unified\n- seed=5\n")
    (root / "broken").mkdir()
    (root / "broken" / "result.json").write_text("{not json")
    write_run(root, "running", "unified", 7, {"news": metrics(0.6, 0.5)}, status="running")
    # a per-scenario run's own sub-runs are not runs of their own
    (root / "per_scenario-s1" / "per_scenario" / "news" / "checkpoints").mkdir(parents=True)
    # seed 1 of unified recorded again later: the newer one wins, the older is listed
    import os
    newer = write_run(root, "unified-s1-rerun", "unified", 1, {s: metrics(0.9, 0.1) for s in SCENARIOS})
    os.utime(newer / "result.json", (4e9, 4e9))

    dirs, _ = find_run_dirs([root])
    assert root / "per_scenario-s1" / "per_scenario" / "news" not in dirs
    runs, failures = load_runs([root])
    by_path = {Path(f.path).name: f for f in failures}
    assert by_path["crashed"].status == "failed" and by_path["crashed"].reason == "RuntimeError: CUDA out of memory"
    assert by_path["killed"].status == "incomplete" and by_path["killed"].overrides == ["model=unified", "seed=5"]
    assert by_path["broken"].status == "unreadable"
    assert by_path["running"].status == "running"
    agg = aggregate(runs, failures)
    sup = [f for f in agg.failures if f.status == "superseded"]
    assert len(sup) == 1 and sup[0].path.endswith("unified-s1") and "unified-s1-rerun" in sup[0].reason
    assert cell(agg, "unified", "news", "auc")["n"] == 3
    assert cell(agg, "unified", "news", "auc")["mean"] == pytest.approx(
        np.mean([0.9] + [sweep["vals"][("unified", s, "news")][0] for s in (2, 3)]))

    out = tmp_path / "report"
    assert main([str(root), "--out", str(out)]) == 0
    md = capsys.readouterr().out
    assert "Failed, incomplete and superseded runs (5)" in md
    failures_md = (out / "failures.md").read_text()
    for name in ("crashed", "killed", "broken", "running", "unified-s1"):
        assert name in failures_md
    assert "CUDA out of memory" in failures_md and "model=unified seed=5" in failures_md


def test_cli_writes_every_format(sweep, tmp_path, capsys):
    out = tmp_path / "out"
    (out).mkdir()
    (out / "failures.md").write_text("stale")
    rc = main([str(sweep["root"] / "*"), "--out", str(out), "--title", "Unified vs per_scenario",
               "--plot-metric", "logloss"])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert stdout == (out / "table.md").read_text()
    assert stdout.startswith("# Unified vs per_scenario") and "| ecommerce" in stdout
    assert not (out / "failures.md").exists()  # no failures: a stale list is removed

    csv = pd.read_csv(out / "table.csv")
    for col in ("group", "model", "scenario", "metric", "mean", "std", "n", "gain", "p_value", "significant"):
        assert col in csv.columns
    assert len(csv) == 2 * 2 * 4  # models x scenarios x metrics
    agg = aggregate(*load_runs([sweep["root"]]))
    row = csv[(csv.model == "unified") & (csv.scenario == "news") & (csv.metric == "auc")].iloc[0]
    c = cell(agg, "unified", "news", "auc")
    assert row["mean"] == pytest.approx(c["mean"], rel=1e-9) and row["p_value"] == pytest.approx(c["p_value"],
                                                                                               rel=1e-9)
    assert row["significant"] == c["significant"]

    tex = (out / "table.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex and r"per\_scenario" in tex
    best_auc = cell(agg, "unified", "ecommerce", "auc")["mean"]
    best_ll = cell(agg, "unified", "ecommerce", "logloss")["mean"]
    assert rf"\mathbf{{{best_auc:.4f}}}" in tex and rf"\mathbf{{{best_ll:.4f}}}" in tex
    assert tex == render_latex(agg, "Unified vs per_scenario")

    png = (out / "plot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_cli_formats_subset_and_no_out(sweep, tmp_path, capsys):
    out = tmp_path / "o"
    assert main([str(sweep["root"]), "--out", str(out), "--format", "csv", "--metrics", "auc"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["table.csv"]
    assert set(pd.read_csv(io.StringIO((out / "table.csv").read_text()))["metric"]) == {"auc"}
    capsys.readouterr()
    assert main([str(sweep["root"])]) == 0
    assert "| news" in capsys.readouterr().out


@pytest.mark.parametrize("make", ["missing", "empty", "only_failures"])
def test_cli_no_runs_is_an_error(tmp_path, capsys, make):
    target = tmp_path / "runs"
    if make != "missing":
        target.mkdir()
    if make == "only_failures":
        (target / "x" / ".hydra").mkdir(parents=True)
    assert main([str(target)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: no completed runs")


def test_cli_bad_arguments(sweep, capsys):
    assert main([str(sweep["root"]), "--format", "docx"]) == 1
    assert main([str(sweep["root"]), "--plot-metric", "mrr", "--metrics", "auc"]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 2


def test_model_labels_prefer_names_over_class_paths(tmp_path):
    for seed in (1, 2):
        write_run(tmp_path, f"b{seed}", "per_scenario", seed, {"news": metrics(0.6, 0.5)})
        for bb, target in (("mean", "x.encoders.MeanPooling"), ("din", "x.encoders.DIN")):
            write_run(tmp_path, f"u-{bb}{seed}", "unified", seed, {"news": metrics(0.62, 0.5)},
                      cfg={"backbone_name": bb, "backbone.history_encoder._target_": target})
    agg = aggregate(*load_runs([tmp_path]))
    assert set(agg.table["model"]) == {"per_scenario", "unified[backbone_name=din]", "unified[backbone_name=mean]"}
    assert cell(agg, "unified[backbone_name=din]", "news", "auc")["n"] == 2


def test_slices_report_the_cold_start_cells_with_the_same_statistics(tmp_path):
    for seed in (1, 2, 3):
        for model, shift in (("per_scenario", 0.0), ("unified", 0.05)):
            slices = {s: {"cold_user": {"auc": 0.6 + shift + seed / 1000, "rows": 10},
                          "warm_user": {"auc": 0.7 + seed / 1000, "rows": 90}} for s in SCENARIOS}
            write_run(tmp_path / "runs", f"{model}-s{seed}", model, seed,
                      {s: metrics(0.7, 0.5) for s in SCENARIOS}, test_slices=slices)
    out = tmp_path / "out"
    assert main([str(tmp_path / "runs"), "--slices", "--metrics", "auc", "--out", str(out)]) == 0
    table = pd.read_csv(out / "slices.csv")
    assert set(table["scenario"]) == {f"{s}/{sl}" for s in SCENARIOS for sl in ("cold_user", "warm_user")}
    row = table[(table["model"] == "unified") & (table["scenario"] == "news/cold_user")].iloc[0]
    assert row["mean"] == pytest.approx(0.652) and row["gain"] == pytest.approx(0.05 / 0.602)
    warm = table[(table["model"] == "unified") & (table["scenario"] == "news/warm_user")].iloc[0]
    assert warm["gain"] == pytest.approx(0.0)
    assert (out / "slices.md").is_file() and not (out / "table.md").exists()  # the main table is not touched


def test_slices_refused_when_no_run_has_them(tmp_path, capsys):
    write_run(tmp_path / "runs", "u-s1", "unified", 1, {s: metrics(0.7, 0.5) for s in SCENARIOS})
    assert main([str(tmp_path / "runs"), "--slices"]) == 1
    assert "none of the 1 runs has test_slices" in capsys.readouterr().err


def test_second_baseline_gains_and_paired_tests(tmp_path, capsys):
    """--baseline per_scenario,strongest: every model is compared with both, each paired over seeds; the strongest
    row is one name although its config differs per scenario (disjoint scenarios), and a scenario's history
    settings / the objectives are model keys (no news#2 variant, no second group)."""
    rng = np.random.default_rng(1)
    vals: dict[tuple[str, int, str], float] = {}
    for seed in (1, 2, 3):
        for model, shift in (("per_scenario", 0.0), ("unified", 0.01)):
            test = {}
            for s, base in zip(SCENARIOS, (0.70, 0.60)):
                vals[(model, seed, s)] = base + shift + float(rng.normal(0, 0.003))
                test[s] = metrics(vals[(model, seed, s)], 0.5)
            write_run(tmp_path, f"{model}-s{seed}", model, seed, test)
        for s, base, bb in zip(SCENARIOS, (0.70, 0.60), ("sasrec", "din")):
            vals[("strongest", seed, s)] = base + 0.02 + float(rng.normal(0, 0.003))
            write_run(tmp_path, f"strongest-{s}-s{seed}", "strongest", seed, {s: metrics(vals[("strongest", seed, s)],
                                                                                      0.5)},
                      mode="separate", cfg={"backbone_name": bb, "objectives.next_item.weight": 1.0,
                                            f"scenarios.{s}.history.feedback": "all"})
    agg = aggregate(*load_runs([tmp_path]), baseline="per_scenario,strongest", metrics=["auc"])
    assert len(agg.groups) == 1 and agg.extra_baselines == ["strongest"]
    assert set(agg.table["model"]) == {"per_scenario", "strongest", "unified"}
    assert set(agg.table["scenario"]) == set(SCENARIOS)
    for s in SCENARIOS:
        u = np.array([vals[("unified", k, s)] for k in (1, 2, 3)])
        st = np.array([vals[("strongest", k, s)] for k in (1, 2, 3)])
        c = cell(agg, "unified", s, "auc")
        assert c["gain_vs_strongest"] == pytest.approx((u.mean() - st.mean()) / st.mean(), rel=1e-12)
        assert c["p_value_vs_strongest"] == pytest.approx(stats.ttest_rel(u, st).pvalue, rel=1e-12)
        assert c["n_pairs_vs_strongest"] == 3
        assert c["gain"] == pytest.approx(cell(agg, "unified", s, "auc")["gain"])  # the main baseline unchanged
        assert np.isnan(cell(agg, "strongest", s, "auc")["gain_vs_strongest"])
        assert cell(agg, "strongest", s, "auc")["gain"] > 0  # strongest vs per_scenario
    assert list(dict.fromkeys(agg.table["model"]))[:2] == ["per_scenario", "strongest"]  # baselines first
    md = render_markdown(agg)
    assert "Δ auc vs strongest" in md and "against strongest" in md
    row = next(ln for ln in md.splitlines() if ln.startswith("| news ") and "| strongest " in ln)
    assert row.rstrip(" |").endswith("—")
    assert r"$\Delta$ vs strongest" in render_latex(agg)
    # the same name on overlapping scenarios with different configs still splits into labelled rows
    write_run(tmp_path, "strongest-both-s1", "strongest", 1, {s: metrics(0.9, 0.5) for s in SCENARIOS},
              mode="separate", cfg={"backbone_name": "lstm"})
    labels = set(aggregate(*load_runs([tmp_path]), metrics=["auc"]).table["model"])
    assert "strongest" not in labels and any(lb.startswith("strongest[backbone_name=lstm") for lb in labels)
    # a bad list of baselines: one line
    assert main([str(tmp_path), "--baseline", "per_scenario,,strongest"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "per_scenario,strongest" in err
