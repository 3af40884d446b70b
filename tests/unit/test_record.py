"""result.json has one reader: RunRecord.read checks the shape; unirec-report lists bad files, shows inf / nan."""

from __future__ import annotations

import json
import math
import stat
from pathlib import Path

import pytest

from unirec_lab.cli.report import main
from unirec_lab.results.aggregate import aggregate
from unirec_lab.results.record import SCHEMA_VERSION, RecordError, RunRecord, write_result
from unirec_lab.results.report import render_latex, render_markdown
from unirec_lab.results.runs import load_runs


def record(model: str, seed: int, test: dict, **extra) -> dict:
    return {"status": "completed", "model": model, "mode": "joint", "seed": seed, "experiment": "t",
            "scenarios": list(test) if isinstance(test, dict) and test else ["news"], "overrides": [],
            "config": {"seed": seed, "model": {"name": model}}, "test": test, **extra}


def put(root: Path, name: str, rec) -> Path:
    (root / name).mkdir(parents=True)
    (root / name / "result.json").write_text(json.dumps(rec))
    return root / name / "result.json"


def test_write_then_read_roundtrip_with_version(tmp_path):
    path = write_result(tmp_path, record("unified", 1, {"news": {"auc": 0.7, "rows": 10}}))
    rec = RunRecord.read(path)
    assert rec.schema_version == SCHEMA_VERSION == 1 and rec.test["news"]["auc"] == 0.7
    assert json.loads(path.read_text())["schema_version"] == 1


def test_records_without_schema_version_read_as_version_1(tmp_path):
    legacy = put(tmp_path, "old", {k: v for k, v in record("unified", 1, {"news": {"auc": 0.7}}).items()})
    assert RunRecord.read(legacy).schema_version == 1
    older = put(tmp_path, "older", {"result_version": 1, **record("unified", 1, {"news": {"auc": 0.7}})})
    assert RunRecord.read(older).schema_version == 1


@pytest.mark.parametrize("rec, problem", [
    ([1, 2], "expected a JSON object, got a list"),
    (record("u", 1, {"news": [1, 2, 3]}), "test.news is a list, expected {metric: number}"),
    (record("u", 1, {"auc": "high"}), "test.auc is a string, expected {metric: number}"),
    (record("u", 1, {"news": {"auc": "high"}}), "test.news.auc is 'high', expected a number"),
    (record("u", 1, {"news": {"auc": True}}), "test.news.auc is a boolean, expected a number"),
    (record("u", "1", {"news": {"auc": 0.5}}), "seed is a string, expected an integer"),
    (record("", 1, {"news": {"auc": 0.5}}), "model is a string, expected a non-empty string"),
    ({**record("u", 1, {"news": {"auc": 0.5}}), "scenarios": "news"}, "scenarios is a string, expected a non-empty"),
    ({k: v for k, v in record("u", 1, {"news": {"auc": 0.5}}).items() if k != "test"}, "completed record lacks 'test'"),
    ({**record("u", 1, {"news": {"auc": 0.5}}), "schema_version": 2}, "schema_version 2 is newer than this"),
    ({**record("u", 1, {"news": {"auc": 0.5}}), "test_slices": {"news": {"cold_user": [1]}}},
     "test_slices.news.cold_user is a list"),
])
def test_bad_shapes_are_one_line_naming_the_file(tmp_path, rec, problem):
    path = put(tmp_path, "r", rec)
    with pytest.raises(RecordError) as e:
        RunRecord.read(path)
    assert str(e.value).startswith(f"{path}: ") and problem in str(e.value) and "\n" not in str(e.value)
    assert e.value.kind == "invalid"


def test_unparsable_json_is_unreadable(tmp_path):
    path = tmp_path / "result.json"
    path.write_text('{"status": "completed",\n "model": }')
    with pytest.raises(RecordError, match=r"result.json: not valid JSON \(Expecting value at line 2 column 11\)") as e:
        RunRecord.read(path)
    assert e.value.kind == "unreadable"


def test_writer_refuses_what_the_reader_would_reject(tmp_path):
    with pytest.raises(RecordError, match="refusing to write a record RunRecord.read would reject: test.news"):
        write_result(tmp_path, record("u", 1, {"news": "0.7"}))
    assert not (tmp_path / "result.json").exists()


def test_result_json_mode_follows_umask(tmp_path):
    import os

    prev = os.umask(0o022)
    try:
        path = write_result(tmp_path / "run", record("u", 1, {"news": {"auc": 0.5}}))
    finally:
        os.umask(prev)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755


def test_report_lists_invalid_files_and_tabulates_the_valid_ones(tmp_path, capsys):
    for seed in (1, 2):
        put(tmp_path, f"ok-{seed}", record("unified", seed, {"news": {"auc": 0.6 + seed / 100, "logloss": 0.5}}))
    put(tmp_path, "listy", [{"model": "unified"}])
    put(tmp_path, "shape", record("unified", 3, {"news": [1, 2, 3]}))
    put(tmp_path, "string", record("unified", 4, {"auc": "high"}))
    put(tmp_path, "stringmetric", record("unified", 5, {"news": {"auc": "high"}}))
    assert main([str(tmp_path), "--metrics", "auc"]) == 0
    out = capsys.readouterr().out
    cells = [[c.strip() for c in ln.split("|")[1:-1]] for ln in out.splitlines() if ln.startswith("|")]
    listed = {Path(c[0]).name: c[1:3] for c in cells if c[0].startswith(str(tmp_path))}
    assert listed == {"listy": ["invalid", "result.json: expected a JSON object, got a list"],
                      "shape": ["invalid", "result.json: test.news is a list, expected {metric: number}"],
                      "string": ["invalid", "result.json: test.auc is a string, expected {metric: number}"],
                      "stringmetric": ["invalid", "result.json: test.news.auc is 'high', expected a number"]}
    assert ["news", "unified", "2", "**0.6150** ± 0.0071", "n/a"] in cells  # only the two valid seeds


def test_nonfinite_metrics_render_as_inf_and_nan(tmp_path):
    for seed in (1, 2):
        put(tmp_path, f"a-{seed}", record("a", seed, {"news": {"auc": 0.7, "logloss": math.inf}}))
        put(tmp_path, f"b-{seed}", record("b", seed, {"news": {"auc": math.nan, "logloss": -math.inf}}))
    put(tmp_path, "c-1", record("c", 1, {"news": {"logloss": 0.4}}))  # auc absent: n/a, not nan
    runs, failures = load_runs([tmp_path])
    assert not failures
    agg = aggregate(runs, failures, baseline="a", metrics=["auc", "logloss"])
    md = render_markdown(agg)
    cells = [[c.strip() for c in ln.split("|")[1:-1]] for ln in md.splitlines() if ln.startswith("| news")]
    assert cells == [["news", "a", "2", "**0.7000** ± 0.0000", "—", "inf ± nan", "—"],
                     ["news", "b", "2", "nan ± nan", "n/a", "-inf ± nan", "n/a"],
                     ["news", "c", "1", "n/a", "n/a", "**0.4000**", "n/a"]]
    tex = render_latex(agg)
    assert r"$\infty \pm \mathrm{NaN}$" in tex and r"$-\infty \pm \mathrm{NaN}$" in tex
    assert r"$\mathrm{NaN} \pm \mathrm{NaN}$" in tex and "$$" not in tex
    assert main([str(tmp_path), "--baseline", "a", "--metrics", "auc,logloss", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "plot.png").stat().st_size > 0


def train_shaped(**over) -> dict:
    """Every key a RunRecord holds, values shaped like unirec_lab.train's (eval_seconds, train_targets, ... are
    optional keys older single-dataset records wrote)."""
    rec = {"status": "completed", "model": "unified", "mode": "joint", "description": "shared backbone",
           "run_name": "unified-mean-mlp-10p-s1", "experiment": "t", "scenarios": ["news"], "seed": 1,
           "overrides": ["seed=1"], "config": {"seed": 1}, "config_flat": {"seed": 1}, "git_sha": "abc",
           "packages": {"python": "3.11"}, "selection": {"monitor": "val/mean/auc", "best_epoch": 0},
           "val": {"news": {"auc": 0.6}}, "test": {"news": {"auc": 0.7, "rows": 10}}, "test_slices": {},
           "test_full_ranking": {}, "val_history": [{"epoch": 0}], "num_parameters": 10, "wall_seconds": 1.5,
           "train_rows": 100, "train_seconds": 1.0, "train_samples_per_second": None, "eval_seconds": 0.2,
           "train_targets": 300, "train_targets_per_second": 300.0, "seconds_per_epoch": 1.0,
           "data": {"news": {"rows": 10}}}
    return {**rec, **over}


def test_train_shaped_record_roundtrips_typed(tmp_path):
    path = write_result(tmp_path, train_shaped())
    rec = RunRecord.read(path)
    assert (rec.model, rec.seed, rec.num_parameters, rec.selection["best_epoch"]) == ("unified", 1, 10, 0)
    assert rec.extra == {} and rec.train_samples_per_second is None
    on_disk = json.loads(path.read_text())
    assert "train_samples_per_second" not in on_disk  # None = not recorded
    assert on_disk == {"schema_version": 1, **{k: v for k, v in train_shaped().items() if v is not None}}
    assert RunRecord.from_dict(on_disk).to_dict() == on_disk


def test_unknown_keys_are_kept_when_reading_and_refused_when_writing(tmp_path):
    path = put(tmp_path, "old", {**record("u", 1, {"news": {"auc": 0.5}}), "result_version": 1, "legacy": [1]})
    rec = RunRecord.read(path)
    assert rec.extra == {"legacy": [1]} and rec.to_dict()["legacy"] == [1] and "result_version" not in rec.to_dict()
    with pytest.raises(RecordError) as e:
        write_result(tmp_path / "new", train_shaped(trian_rows=3))
    assert str(e.value) == (f"{tmp_path / 'new' / 'result.json'}: refusing to write a record RunRecord.read would "
                            "reject: unknown key(s) 'trian_rows': add them to RunRecord "
                            "(unirec_lab/results/record.py) first")
    with pytest.raises(RecordError, match="unknown key"):
        rec.write(tmp_path / "again")  # what was read is not written back with keys this version does not know
    assert not (tmp_path / "new").exists() and not (tmp_path / "again").exists()


@pytest.mark.parametrize("key, value, problem", [
    ("num_parameters", "10", "num_parameters is a string, expected an integer"),
    ("wall_seconds", True, "wall_seconds is a boolean, expected a number"),
    ("selection", [1], "selection is a list, expected an object"),
    ("git_sha", 5, "git_sha is int 5, expected a string"),
])
def test_optional_fields_of_the_wrong_type_are_one_line(tmp_path, key, value, problem):
    path = put(tmp_path, "r", train_shaped(**{key: value}))
    with pytest.raises(RecordError) as e:
        RunRecord.read(path)
    assert str(e.value) == f"{path}: {problem}"


def test_a_record_that_did_not_complete_is_listed_with_its_error(tmp_path):
    put(tmp_path, "crashed", {"status": "diverged", "error": "Traceback\nFloatingPointError: loss is nan",
                              "overrides": ["lr=10"]})
    runs, failures = load_runs([tmp_path])
    assert runs.empty and [(f.status, f.reason, f.overrides) for f in failures] == [
        ("diverged", "FloatingPointError: loss is nan", ["lr=10"])]
