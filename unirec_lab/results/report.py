"""Render an ``Aggregate`` (see ``aggregate.py``) as Markdown, LaTeX (booktabs) and long-format CSV; write them.

Layout: one table per config group; rows = scenario x model (baseline first), columns = per metric the seed mean
± sample std and the relative gain over the baseline (with the paired-test p-value in Markdown). The best mean of
each scenario x metric is bold (lowest for loss metrics). Failed / incomplete / superseded runs get their own
section (and ``failures.md``). Output is deterministic (no timestamps), so a checked-in table can be regenerated.
A recorded non-finite metric (a diverged run) is shown, never blanked: ``inf`` / ``-inf`` / ``nan`` in Markdown,
``\\infty`` / ``\\mathrm{NaN}`` in LaTeX; a metric a run did not record is ``n/a``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from unirec_lab.results.aggregate import Aggregate
from unirec_lab.results.grouping import Group
from unirec_lab.results.runs import Failure
from unirec_lab.results.stats import VS_FIELDS, lower_is_better, vs_column
from unirec_lab.results.tables import csv_table, fixed, latex_tabular, markdown_table, tex_escape, tex_fixed
from unirec_lab.utils.atomic import atomic_write_bytes, atomic_write_text

FORMATS = ("md", "tex", "csv", "png")
FILES = {"md": "table.md", "tex": "table.tex", "csv": "table.csv", "png": "plot.png"}
FAILURES_FILE = "failures.md"
PUBLISHED_FILE = "published.csv"  # ours vs published (unirec-report --published), beside table.csv
DAGGER = "†"


def _p(p: float, n_pairs: int) -> str:
    if not math.isfinite(p):
        return "p n/a" if n_pairs < 2 else "p n/a: no variance"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _rows(agg: Aggregate, g: Group) -> list[tuple[str, str, pd.DataFrame]]:
    """(scenario, model, its rows indexed by metric) in presentation order."""
    t = agg.table[agg.table["group"] == g.name]
    out = []
    for (sc, model), d in t.groupby(["scenario", "model"], sort=False):
        out.append((sc, model, d.set_index("metric")))
    return out


def legend(agg: Aggregate) -> str:
    return (f"mean ± sample std over seeds (ddof=1; no ± when n = 1); bold = best per scenario × metric "
            f"(↓ = lower is better: metrics containing 'loss'). Δ = relative gain over the baseline "
            f"({agg.baseline}) on the seed means, (model − base)/|base|, sign-flipped for ↓ metrics so positive = "
            f"better; {DAGGER} = p < {agg.alpha:g}, two-sided paired t-test (scipy.stats.ttest_rel) over the seeds "
            f"shared with the baseline, no multiple-comparison correction; p n/a = fewer than 2 paired seeds "
            f"('no variance': every paired difference is the same)."
            + "".join(f" Δ … vs {b}: the same against {b}." for b in agg.extra_baselines))


def group_header(g: Group, agg: Aggregate) -> list[str]:
    lines = [f"experiment {', '.join(g.experiments) or '?'} · {g.n_runs} run{'s' if g.n_runs != 1 else ''} · config {g.signature} · "
             f"baseline {g.baseline or 'n/a'}"]
    if g.differing:
        lines.append("differs from the other groups in: " + ", ".join(f"{k}={v}" for k, v in g.differing.items()))
    for sc, keys in g.scenario_variants.items():
        lines.append(f"scenario variant {sc}: " + ", ".join(f"{k}={v}" for k, v in keys.items()))
    if len(g.git_shas) > 1:
        lines.append(f"note: runs span {len(g.git_shas)} git commits: {', '.join(s[:12] for s in g.git_shas)}")
    lines += [f"note: {n}" for n in g.notes]
    return lines


# --------------------------------------------------------------------------------------------- Markdown


def _md_value(r: pd.Series, digits: int, n_row: int) -> str:
    if not r["n"]:
        return "n/a"
    mean = fixed(r["mean"], digits)
    text = f"**{mean}**" if r["best"] else mean
    if r["n"] > 1:
        text += f" ± {fixed(r['std'], digits)}"
    if r["n"] != n_row:
        text += f" (n={r['n']})"
    return text


def _vs(r: pd.Series, g: Group, baseline: str | None) -> tuple[bool, float, bool, float, int]:
    """(row is that baseline, gain, significant, p, pairs) of row ``r`` against the main baseline (None) or the
    further baseline ``baseline``."""
    if baseline is None:
        return bool(r["is_baseline"]), r["gain"], bool(r["significant"]), r["p_value"], int(r["n_pairs"])
    c = {f: vs_column(f, baseline) for f in VS_FIELDS}
    return (r["model"] == g.extra_baselines.get(baseline), r[c["gain"]], bool(r[c["significant"]]), r[c["p_value"]],
            int(r[c["n_pairs"]]))


def _md_gain(r: pd.Series, g: Group, baseline: str | None = None) -> str:
    is_base, gain, sig, p, n_pairs = _vs(r, g, baseline)
    if is_base:
        return "—"
    if not math.isfinite(gain):
        return "n/a"
    return f"{100 * gain:+.2f}%" + (DAGGER if sig else "") + f" ({_p(p, n_pairs)})"


def render_markdown(agg: Aggregate, title: str | None = None, digits: int = 4) -> str:
    out = [f"# {title or 'Results'}", ""]
    arrows = {m: "↓" if lower_is_better(m) else "↑" for m in agg.metrics}
    for g in agg.groups:
        out += [f"## Group {g.name}", "", *(f"{ln}  " for ln in group_header(g, agg)), ""]
        header = ["scenario", "model", "n"]
        for m in agg.metrics:
            header += [f"{m} {arrows[m]}", f"Δ {m}", *(f"Δ {m} vs {b}" for b in agg.extra_baselines)]
        rows = []
        for sc, model, d in _rows(agg, g):
            n_row = int(d["n"].max())
            row = [sc, model, str(n_row)]
            for m in agg.metrics:
                row += [_md_value(d.loc[m], digits, n_row), _md_gain(d.loc[m], g),
                        *(_md_gain(d.loc[m], g, b) for b in agg.extra_baselines)]
            rows.append(row)
        out += [markdown_table(header, rows), ""]
    if agg.groups:
        out += [legend(agg), ""]
    out += agg.published_lines
    out += [f"note: {n}" for n in agg.notes] + ([""] if agg.notes else [])
    if agg.failures:
        out += [render_failures(agg.failures, heading="##")]
    return "\n".join(out).rstrip() + "\n"


def render_failures(failures: Sequence[Failure], heading: str = "#") -> str:
    rows = [[f.path, f.status, f.reason.replace("|", "\\|"), " ".join(f.overrides).replace("|", "\\|")]
            for f in failures]
    return (f"{heading} Failed, incomplete and superseded runs ({len(failures)})\n\n"
            "These runs contribute no numbers to the tables above.\n\n"
            + markdown_table(["run dir", "status", "reason", "overrides"], rows) + "\n")


# --------------------------------------------------------------------------------------------- LaTeX

def _tex_value(r: pd.Series, digits: int) -> str:
    if not r["n"]:
        return "n/a"
    mean = tex_fixed(r["mean"], digits)
    text = rf"\mathbf{{{mean}}}" if r["best"] else mean
    if r["n"] > 1:
        text += rf" \pm {tex_fixed(r['std'], digits)}"
    return f"${text}$"


def _tex_gain(r: pd.Series, g: Group, baseline: str | None = None) -> str:
    is_base, gain, sig, _, _ = _vs(r, g, baseline)
    if is_base:
        return "--"
    if not math.isfinite(gain):
        return "n/a"
    return f"${100 * gain:+.2f}\\%" + (r"^{\dagger}" if sig else "") + "$"


def _tex_legend(agg: Aggregate) -> str:
    return (r"Mean $\pm$ sample std over seeds (ddof${}=1$; no $\pm$ when $n=1$); bold: best per scenario and "
            r"metric ($\downarrow$: lower is better). $\Delta$: relative gain over "
            + tex_escape(agg.baseline) + r" on the seed means, $(\mathrm{model}-\mathrm{base})/|\mathrm{base}|$, "
            r"sign-flipped for $\downarrow$ metrics so that positive is better; $^{\dagger}$: $p<"
            + f"{agg.alpha:g}" + r"$, two-sided paired $t$-test over the seeds shared with the baseline.")


def render_latex(agg: Aggregate, title: str | None = None, digits: int = 4) -> str:
    out = ["% Generated by unirec-report from result.json files; do not edit by hand.",
           "% Needs \\usepackage{booktabs}."]
    k = len(agg.metrics)
    w = 2 + len(agg.extra_baselines)  # columns per metric: value, Δ (main baseline), Δ per further baseline
    for g in agg.groups:
        caption = tex_escape(title or "Results") + (f" (group {g.name})" if len(agg.groups) > 1 else "")
        multi = [rf"\multicolumn{{{w}}}{{c}}{{{tex_escape(m)} " + (r"$\downarrow$" if lower_is_better(m) else r"$\uparrow$")
                 + "}" for m in agg.metrics]
        cmid = " ".join(rf"\cmidrule(lr){{{4 + w * i}-{3 + w * (i + 1)}}}" for i in range(k))
        sub = [r"mean $\pm$ std", r"$\Delta$", *(rf"$\Delta$ vs {tex_escape(b)}" for b in agg.extra_baselines)]
        head = [["Scenario", "Model", "$n$", *multi], cmid, " & & & " + " & ".join(sub * k) + r" \\"]
        rows, breaks, last_sc = [], [], None
        for sc, model, d in _rows(agg, g):
            if last_sc is not None and sc != last_sc:
                breaks.append(len(rows))
            cells = [tex_escape(sc) if sc != last_sc else "", tex_escape(model), str(int(d["n"].max()))]
            rows.append(cells + [c for m in agg.metrics for c in (
                _tex_value(d.loc[m], digits), _tex_gain(d.loc[m], g),
                *(_tex_gain(d.loc[m], g, b) for b in agg.extra_baselines))])
            last_sc = sc
        out += ["", r"\begin{table}[t]", r"\centering", rf"\caption{{{caption}}}",
                *latex_tabular("llr" + "r" * (w * k), head, rows, breaks),
                r"\par\smallskip\footnotesize " + _tex_legend(agg), r"\end{table}"]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------- CSV


def render_csv(agg: Aggregate) -> str:
    t = agg.table.copy()
    t.insert(5, "baseline", t["group"].map({g.name: g.baseline or "" for g in agg.groups}))
    return csv_table(list(t.columns), t.itertuples(index=False), float_format="%.10g")


# --------------------------------------------------------------------------------------------- writing


def write_report(agg: Aggregate, out_dir: Path | str, formats: Sequence[str] = FORMATS, title: str | None = None,
                 plot_metric: str | None = None, digits: int = 4, stem: str | None = None) -> list[Path]:
    """Write the requested formats (atomically) and ``failures.md`` (removed when there are none).
    ``stem``: file names ``<stem>.md`` ... instead of ``FILES`` (e.g. ``slices`` beside the main table)."""
    out_dir = Path(out_dir)
    written = []
    for fmt in formats:
        path = out_dir / (f"{stem}{Path(FILES[fmt]).suffix}" if stem else FILES[fmt])
        if fmt == "md":
            atomic_write_text(path, render_markdown(agg, title, digits))
        elif fmt == "tex":
            atomic_write_text(path, render_latex(agg, title, digits))
        elif fmt == "csv":
            atomic_write_text(path, render_csv(agg))
            if agg.published is not None and not stem:
                p = out_dir / PUBLISHED_FILE
                atomic_write_text(p, csv_table(list(agg.published.columns), agg.published.itertuples(index=False),
                                               float_format="%.10g"))
                written.append(p)
        elif fmt == "png":
            from unirec_lab.results.plots import plot_png

            atomic_write_bytes(path, plot_png(agg, plot_metric or agg.metrics[0], title))
        written.append(path)
    failures = out_dir / FAILURES_FILE
    if agg.failures:
        atomic_write_text(failures, render_failures(agg.failures))
        written.append(failures)
    else:
        failures.unlink(missing_ok=True)  # a stale list from an earlier report would mislead
    return written
