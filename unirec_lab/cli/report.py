"""Tables from many runs: mean ± std over seeds, gain vs. a baseline, paired significance, MD / LaTeX / CSV / PNG.

    unirec-report multirun/main                                  # print the Markdown table
    unirec-report 'outputs/compare/*' --out experiments/main --title "Unified vs per-scenario"
    unirec-report runs/ --metrics auc,logloss --format md,csv --strict
    unirec-report multirun/main --slices --metrics auc,logloss --out experiments/main   # cold-start slices
    unirec-report outputs/reproduce_s3rec_sasrec --published experiments/reproduce_s3rec_sasrec/published.yaml
    unirec-report multirun/main --baseline per_scenario,strongest   # gains + paired p-values against both

``--slices`` tabulates the cold-start slices of each scenario's test set (``<scenario>/cold_user``,
``warm_user``, ``cold_item``, ``warm_item``; see ``unirec_lab/evaluation/slices.py``) with the same statistics, into
``slices.md/.tex/.csv/.png``: where the unified model's gains over the baseline come from.

Every run dir under the inputs is found (``result.json``; ``failure.json`` or ``.hydra/`` / ``checkpoints/``
without ``result.json`` = failed / incomplete; a ``result.json`` that ``RunRecord.read`` rejects = invalid or
unreadable, with the reason; all listed in their own section, never tabulated). Runs are pooled over seeds only
when their configs agree on everything but seed, model keys and paths; otherwise each config is its own group
(``--strict``: refuse instead). Conventions (std, gain sign, tests) are in ``unirec_lab/results/aggregate.py``
and printed under the table. Without ``--out`` nothing is written; the Markdown always goes to stdout.
Exit status: 0 ok, 1 no completed runs / refused (``--strict``) / bad arguments.
"""

from __future__ import annotations

import argparse
import sys

from unirec_lab.results.aggregate import DEFAULT_BASELINE, DEFAULT_METRICS, aggregate, parse_baselines
from unirec_lab.results.grouping import IncomparableRuns
from unirec_lab.results.published import PublishedError, load_published, with_published
from unirec_lab.results.report import FORMATS, render_markdown, write_report
from unirec_lab.results.runs import find_run_dirs, load_runs


def _csv_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="unirec-report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", help="run dirs, dirs holding run dirs, or globs (quote them)")
    ap.add_argument("--baseline", default=DEFAULT_BASELINE,
                    help="model name (or full row label) to compare against; several, comma-separated "
                         "(per_scenario,strongest): gains and paired p-values against each, the first the main one")
    ap.add_argument("--metrics", type=_csv_list, default=list(DEFAULT_METRICS), help="comma-separated")
    ap.add_argument("--format", type=_csv_list, default=list(FORMATS), help=f"any of {','.join(FORMATS)}")
    ap.add_argument("--out", default=None, help="write table.md/.tex/.csv, plot.png, failures.md here")
    ap.add_argument("--plot-metric", default=None, help="metric of plot.png (default: the first of --metrics)")
    ap.add_argument("--title", default=None)
    ap.add_argument("--alpha", type=float, default=0.05, help="significance level of the paired test")
    ap.add_argument("--digits", type=int, default=4)
    ap.add_argument("--strict", action="store_true", help="refuse to report runs with differing configs")
    ap.add_argument("--ignore-key", action="append", default=[], metavar="PATTERN",
                    help="config key pattern (fnmatch, e.g. 'trainer.devices') that must not split groups")
    ap.add_argument("--published", default=None, metavar="YAML",
                    help="ours vs a published table (reproductions): a section in table.md, published.csv; "
                         "format in unirec_lab/results/published.py")
    ap.add_argument("--slices", action="store_true",
                    help="report the cold-start test slices (result.json test_slices) into slices.*")
    return ap


def _error(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bad = [f for f in args.format if f not in FORMATS]
    if bad:
        return _error(f"--format {','.join(bad)}: unknown, expected any of {','.join(FORMATS)}")
    if not args.metrics:
        return _error("--metrics is empty")
    try:
        baselines = parse_baselines(args.baseline)
    except ValueError as e:
        return _error(f"--{e}")
    if not 0 < args.alpha < 1:
        return _error(f"--alpha {args.alpha}: expected a number in (0, 1)")
    if args.plot_metric and args.plot_metric not in args.metrics:
        return _error(f"--plot-metric {args.plot_metric}: not among --metrics {','.join(args.metrics)}")
    _, unmatched = find_run_dirs(args.paths)
    runs, failures = load_runs(args.paths, slices=args.slices)
    if runs.empty:
        where = " ".join(args.paths)
        detail = f"; {len(failures)} failed/incomplete" if failures else ""
        detail += f"; nothing matches {', '.join(unmatched)}" if unmatched else ""
        if failures:
            from unirec_lab.results.report import render_failures

            print(render_failures(failures))
        return _error(f"no completed runs (result.json) under {where}{detail}")
    if args.slices and not any(runs["test"]):
        return _error(f"--slices: none of the {len(runs)} runs has test_slices in its result.json "
                      "(written with slices=null, or before slices existed)")
    try:
        agg = aggregate(runs, failures, baseline=baselines, metrics=args.metrics, alpha=args.alpha,
                        ignore=args.ignore_key, strict=args.strict)
    except IncomparableRuns as e:
        return _error(str(e))
    if args.published:
        try:
            agg = with_published(agg, runs, load_published(args.published), args.digits)
        except PublishedError as e:
            return _error(str(e))
    agg.notes += [f"input {p!r} matched no run dir" for p in unmatched]
    plot_metric = args.plot_metric or agg.metrics[0]
    md = render_markdown(agg, args.title, args.digits)
    print(md, end="")
    if args.out:
        written = write_report(agg, args.out, args.format, args.title, plot_metric, args.digits,
                               stem="slices" if args.slices else None)
        print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    for p in unmatched:
        print(f"warning: {p!r} matched no run dir", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
