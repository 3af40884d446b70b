"""The serving artifact: export parity with the tested checkpoint, versions + CURRENT, tamper refusal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unirec_lab.cli.explain import load_run
from unirec_lab.cli.export import main as export_main
from unirec_lab.serve.artifact import (
    ArtifactError,
    current_version,
    load_artifact,
    set_current,
    versions,
    write_version,
)
from unirec_lab.serve.build_spec import SpecError, instantiate
from unirec_lab.serve.export import compact_right, latest_positives

from conftest import compose_cfg, tiny_overrides


def _train(root: Path, overrides: list[str]) -> Path:
    from unirec_lab.train import train

    cfg = compose_cfg(root / "run", tiny_overrides() + ["debug=fast", "logger=none", "num_threads=1", *overrides])
    train(cfg)
    return Path(cfg.paths.output_dir)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("serve_run"), ["selection.scope=per_scenario", "trainer.max_epochs=3"])


def _test_rows(run: Path, scenario: str):
    _, dm, model = load_run(run, scenario)
    rows = dm.splits["test"]
    m = rows["scenario"] == dm.scenario_names.index(scenario)
    return {k: v[m] for k, v in rows.items()}, model


def test_export_parity_per_scenario_selection(run_dir, tmp_path, capsys):
    assert export_main([str(run_dir), "--out", str(tmp_path / "art")]) == 0
    assert "v0001" in capsys.readouterr().out
    art = load_artifact(tmp_path / "art")
    assert art.version == "v0001" and set(art.models) == set(art.scenarios)  # one tested checkpoint each
    picked = {s: json.loads((run_dir / "result.json").read_text())["selection"][s]["best_epoch"] for s in art.scenarios}
    assert picked["news"] != picked["social"], picked  # so parity below tells the two checkpoints apart
    for scenario in ("news", "social"):
        rows, model = _test_rows(run_dir, scenario)
        served, _ = art.model_for(scenario)
        with torch.no_grad():
            want, got = model.eval()(rows), served(rows)
        assert len(want) > 0 and torch.allclose(got, want, atol=1e-6, rtol=0)
    # the catalogue is the scenario's whole item range; every user has a history row and popularity is counts
    sc = art.scenarios["news"]
    assert len(art.catalogue("news")) == sc.num_items and sc.history.shape == (sc.num_users, art.history_len)
    assert sc.popularity.sum() >= sc.seen_indptr[-1] > 0


def test_global_selection_one_model_and_versions(tmp_path):
    run = _train(tmp_path, [])
    root = tmp_path / "art"
    export_main([str(run), "--out", str(root)])
    art = load_artifact(root)
    assert list(art.models) == ["global"]
    rows, model = _test_rows(run, "ecommerce")
    with torch.no_grad():
        assert torch.allclose(art.model_for("ecommerce")[0](rows), model.eval()(rows), atol=1e-6, rtol=0)
    # an updater's publish: a new version becomes CURRENT; the old one stays loadable
    art.info["feedback_seq"] = 7
    v2 = write_version(root, art)
    assert v2.name == "v0002" and current_version(root) == "v0002" and versions(root) == ["v0001", "v0002"]
    assert load_artifact(root).info["feedback_seq"] == 7 and load_artifact(root / "v0001").version == "v0001"
    set_current(root, "v0001")
    assert load_artifact(root).version == "v0001"


@pytest.mark.parametrize("how", ["flip", "truncate", "add", "remove"])
def test_tampered_artifact_is_refused(run_dir, tmp_path, how):
    root = tmp_path / "art"
    export_main([str(run_dir), "--out", str(root)])
    vdir = root / "v0001"
    weights = sorted((vdir / "weights").iterdir())[0]
    if how == "flip":
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif how == "truncate":
        weights.write_bytes(weights.read_bytes()[:100])
    elif how == "add":
        (vdir / "weights" / "extra.pt").write_bytes(b"x")
    else:
        weights.unlink()
    with pytest.raises(ArtifactError) as e:
        load_artifact(root)
    msg = str(e.value)
    assert "\n" not in msg and "refusing the artifact" in msg
    assert (str(vdir / "weights" / "extra.pt") if how == "add" else str(weights)) in msg


def test_export_cli_errors_are_one_line(tmp_path, capsys):
    assert export_main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "result.json: not found" in err
    with pytest.raises(ArtifactError, match="not an artifact"):
        load_artifact(tmp_path)
    (tmp_path / "CURRENT").write_text("../../etc\n")
    with pytest.raises(ArtifactError, match="expected a version name"):
        load_artifact(tmp_path)


def test_spec_refuses_targets_outside_the_package():
    with pytest.raises(SpecError, match="is not inside unirec_lab"):
        instantiate({"_target_": "os.system", "command": "true"})
    assert instantiate({"_target_": "unirec_lab.models.mlp.mlp", "_partial_": True}).func.__name__ == "mlp"


def test_latest_positives_and_compaction():
    user = np.array([0, 0, 0, 1, 0])
    item = np.array([5, 6, 7, 9, 8])
    ts = np.array([3, 1, 2, 1, 9])
    out = latest_positives(user, item, ts, num_users=3, k=3)
    assert out.tolist() == [[7, 5, 8], [-1, -1, 9], [-1, -1, -1]]
    assert compact_right(np.array([[1, -1, 2, -1], [-1, -1, -1, 3]]), 3).tolist() == [[-1, 1, 2], [-1, -1, 3]]


def test_manifest_lists_every_file(run_dir, tmp_path):
    root = tmp_path / "art"
    export_main([str(run_dir), "--out", str(root)])
    manifest = json.loads((root / "v0001" / "manifest.json").read_text())
    on_disk = {str(p.relative_to(root / "v0001")) for p in (root / "v0001").rglob("*") if p.is_file()}
    assert set(manifest["files"]) == on_disk - {"manifest.json"}
    assert {"spec.json", "config.json"} <= set(manifest["files"])


@pytest.mark.parametrize("overrides", [["model=per_scenario"], ["model=mf"]])
def test_export_parity_other_models(tmp_path, overrides):
    run = _train(tmp_path, overrides)
    export_main([str(run), "--out", str(tmp_path / "art")])
    art = load_artifact(tmp_path / "art")
    for scenario in ("education", "news"):
        rows, model = _test_rows(run, scenario)
        with torch.no_grad():
            assert torch.allclose(art.model_for(scenario)[0](rows), model.eval()(rows), atol=1e-6, rtol=0)
    if overrides == ["model=per_scenario"]:  # one model and one feature space per scenario
        assert set(art.models) == set(art.spaces) == set(art.scenarios)


def _every_field_space():
    """A feature space with every optional part filled: text vectors, dense fields, slices sharing ids."""
    from unirec_lab.features import FeatureSpace, Slot

    g = torch.Generator().manual_seed(0)
    return FeatureSpace(
        scenarios=["a", "b"], num_users=7, num_items=5, user_offset={"a": 0, "b": 0}, item_offset={"a": 0, "b": 0},
        tables={"a/user/g": 3}, user_slots=[Slot("a/user/g", "categorical", 0, 1)], item_slots=[],
        user_features=torch.randint(0, 3, (7, 1), generator=g), item_features=torch.zeros(5, 0, dtype=torch.long),
        item_scenario=torch.tensor([-1, 0, 0, 0, 0]), item_train_count=torch.arange(5),
        item_train_pos=torch.arange(5) // 2, user_train_pos=torch.arange(7),
        text_slots=[Slot("shared/text", "dense", 0, 4)], item_text=torch.randn(5, 4, generator=g),
        user_dense_names=["a/user/age"], item_dense_names=[], user_dense=torch.rand(7, 1, generator=g),
        item_dense=torch.zeros(5, 0), id_owner={"b": "a"})


def test_every_feature_space_field_survives_the_artifact():
    """Export writes the space as JSON meta + tensors; every field a model reads must come back (a new
    FeatureSpace field that export forgets fails here)."""
    import dataclasses

    from unirec_lab.serve.artifact import SPACE_TENSORS, space_from, space_meta

    space = _every_field_space()
    meta = json.loads(json.dumps(space_meta(space)))
    back = space_from(meta, {k: getattr(space, k) for k in SPACE_TENSORS if getattr(space, k) is not None})
    for f in dataclasses.fields(space):
        if f.name in ("user_global", "item_global"):  # a grown space is compacted before export
            continue
        want, got = getattr(space, f.name), getattr(back, f.name)
        if isinstance(want, torch.Tensor):
            assert got is not None and torch.equal(want, got), f.name
        else:
            assert want == got, f.name
