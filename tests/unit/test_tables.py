"""results/tables.py is the one renderer: exact Markdown / LaTeX / CSV layout, and the per-run metrics table."""

from __future__ import annotations

import math

from unirec_lab.results.tables import (
    comparison_table,
    csv_table,
    latex_tabular,
    markdown_table,
    scenario_metrics_table,
)


def test_markdown_padded_and_compact():
    rows = [["news", 0.123456, 1234.5], ["ecommerce", math.nan, 7]]
    assert markdown_table(["scenario", "auc", "rate"], rows) == (
        "| scenario  | auc    | rate    |\n"
        "|-----------|--------|---------|\n"
        "| news      | 0.1235 | 1,234.5 |\n"
        "| ecommerce | nan    | 7       |")
    assert markdown_table(["a", "b"], [["x", "y"]], pad=False) == "| a | b |\n|---|---|\n| x | y |"


def test_latex_tabular_rules_and_breaks():
    lines = latex_tabular("lr", [["A", "B"], r"\cmidrule(lr){2-2}"], [["a", "1"], ["", "2"], ["b", "3"]], breaks=[2])
    assert lines == [r"\begin{tabular}{lr}", r"\toprule", r"A & B \\", r"\cmidrule(lr){2-2}", r"\midrule",
                     r"a & 1 \\", r" & 2 \\", r"\midrule", r"b & 3 \\", r"\bottomrule", r"\end{tabular}"]


def test_csv_blanks_missing_values_and_formats_floats():
    text = csv_table(["model", "mean", "n", "ok"], [["u,1", 0.123456789012, 3, True], ["b", math.nan, 2, False],
                                                    ["c", None, 1, True]])
    assert text == 'model,mean,n,ok\n"u,1",0.123456789,3,True\nb,,2,False\nc,,1,True\n'


def test_comparison_table_gain_over_the_baseline():
    tests = {"unified": {"news": {"auc": 0.72}}, "per_scenario": {"news": {"auc": 0.70}, "edu": {"auc": 0.6}}}
    lines = comparison_table(tests, metrics=["auc"], baseline="per_scenario").splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == ["scenario", "unified auc", "per_scenario auc",
                                                              "ΔAUC unified vs per_scenario"]
    assert [c.strip() for c in lines[2].split("|")[1:-1]] == ["news", "0.7200", "0.7000", "+0.0200"]
    assert [c.strip() for c in lines[3].split("|")[1:-1]] == ["edu", "nan", "0.6000", "+nan"]


def test_scenario_metrics_table():
    test = {"news": {"auc": 0.71, "logloss": 0.5, "rows": 10}, "edu": {"auc": 0.6, "rows": 3}}
    text = scenario_metrics_table("unified", "shared backbone", test)
    assert text.splitlines()[0] == "test metrics — unified (shared backbone)"
    assert text.splitlines()[4].split("|")[1:-1] == [" edu      ", " 0.6000 ", " nan     ", " 3    "]
