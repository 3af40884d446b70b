"""Scenarios as slices of one dataset: one id space shared by the slices, one pooled split (disjoint, seeded,
stable), dense fields scaled with train statistics only, the one-line errors, and SWR's MovieLens domains."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from unirec_lab.data.datamodule import MultiScenarioDataModule
from unirec_lab.data.prepare import prepare_bundle
from unirec_lab.data.scenarios.raw import default_raw_dir
from unirec_lab.data.scenarios.table import TableScenario
from unirec_lab.data.scenarios.table_io import TableScenarioError
from unirec_lab.data.schema import BundleError, read_bundle

N_USERS, N_ITEMS = 60, 25


def _files(tmp_path, age_shift: dict[int, float] | None = None):
    """Toy ratings: users rate 8 items (the last 20 users: 1) in two contexts (a user spans both context slices); users carry a
    band (the attribute slices) and an age (dense)."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(N_USERS):
        for i in rng.choice(N_ITEMS, size=8 if u < 40 else 1, replace=False):  # the last 20: one row each
            rows.append((f"u{u}", 100 + int(i), int(rng.integers(1, 6)), "web" if rng.random() < 0.5 else "app"))
    pd.DataFrame(rows, columns=["uid", "iid", "stars", "context"]).to_csv(tmp_path / "inter.csv", index=False)
    age = {u: 18.0 + u for u in range(N_USERS)}
    for u, v in (age_shift or {}).items():
        age[u] = v
    pd.DataFrame({"uid": [f"u{u}" for u in range(N_USERS)], "band": [u % 3 for u in range(N_USERS)],
                  "gender": ["f" if u % 2 else "m" for u in range(N_USERS)],
                  "age": [age[u] for u in range(N_USERS)]}).to_csv(tmp_path / "users.csv", index=False)
    pd.DataFrame({"iid": 100 + np.arange(N_ITEMS), "genre": [f"g{i % 4}|x" for i in range(N_ITEMS)]}).to_csv(
        tmp_path / "items.csv", index=False)


def _source(tmp_path, name, slice_, seed=0, scope="pooled", id_space="toy", scale="minmax"):
    return TableScenario(
        name, {"path": str(tmp_path / "inter.csv")}, {"user": "uid", "item": "iid", "rating": "stars"},
        label={"rule": "threshold", "threshold": 4},
        split={"protocol": "random", "val_frac": 0.1, "test_frac": 0.1, "scope": scope},
        users={"path": str(tmp_path / "users.csv"), "key": "uid",
               "fields": [{"column": "gender"}, {"column": "age", "kind": "dense", "scale": scale}]},
        items={"path": str(tmp_path / "items.csv"), "key": "iid",
               "fields": [{"column": "genre", "kind": "multi", "sep": "|", "max_len": 1}]},
        slice=slice_, id_space=id_space, seed=seed)


BY_CONTEXT = {"web": {"table": "interactions", "column": "context", "values": ["web"]},
              "app": {"table": "interactions", "column": "context", "values": ["app"]}}
BY_BAND = {f"b{b}": {"table": "users", "column": "band", "values": [b]} for b in range(3)}


def _dm(tmp_path, slices, **kw):
    dm = MultiScenarioDataModule({k: {"source": _source(tmp_path, k, v, **kw)} for k, v in slices.items()},
                                 tmp_path / "cache", batch_size=64, history_len=0)
    dm.setup()
    return dm


def _all_rows(dm):
    """(raw-free) global (user, item, split level) of every row of every scenario, as a sorted frame."""
    parts = [pd.DataFrame({"user": t["user"].numpy(), "item": t["item"].numpy(), "level": lv})
             for lv, t in enumerate(dm.splits[s] for s in ("train", "val", "test"))]
    return pd.concat(parts).sort_values(["user", "item"]).reset_index(drop=True)


def test_slices_share_one_id_space(tmp_path):
    _files(tmp_path)
    dm = _dm(tmp_path, BY_CONTEXT)
    sp = dm.space
    assert sp.num_users == N_USERS + 1 and sp.num_items == N_ITEMS + 1  # one range, not one per slice
    assert sp.user_offset["web"] == sp.user_offset["app"] and sp.item_offset["web"] == sp.item_offset["app"]
    rows = {s: torch.cat([dm.splits[x]["user"][dm.splits[x]["scenario"] == i] for x in ("train", "val", "test")])
            for i, s in enumerate(dm.scenario_names)}
    both = np.intersect1d(rows["web"].numpy(), rows["app"].numpy())
    assert len(both) > 30  # most users have rows in both slices ...
    # ... and one embedding row each: the global id is the same in both slices, the fields' tables are shared
    assert {s.table for s in sp.user_slots} == {"shared/toy/user/gender"}
    assert sp.user_dense_names == ["shared/toy/user/age"]
    assert set(sp.tables) == {"shared/toy/user/gender", "shared/toy/item/genre"}
    b_web = read_bundle(prepare_bundle(dm.sources["web"], dm.cache_dir))
    b_app = read_bundle(prepare_bundle(dm.sources["app"], dm.cache_dir))
    assert b_web.spec.num_users == b_app.spec.num_users == N_USERS and b_web.spec.id_space == "toy"
    pd.testing.assert_frame_equal(b_web.users, b_app.users)


def test_slices_without_id_space_keep_their_own_ids(tmp_path):
    _files(tmp_path)
    dm = _dm(tmp_path, BY_BAND, scope="scenario", id_space=None)
    sp = dm.space
    assert sp.num_users == N_USERS + 1 and len(set(sp.user_offset.values())) == 3  # disjoint ranges
    assert all(s.table.split("/")[0] in BY_BAND for s in sp.user_slots)


def test_pooled_split_is_disjoint_seeded_and_stable(tmp_path):
    _files(tmp_path)
    whole = TableScenario(  # the pool as one scenario: the slices must cut exactly its split
        "whole", {"path": str(tmp_path / "inter.csv")}, {"user": "uid", "item": "iid", "rating": "stars"},
        label={"rule": "threshold", "threshold": 4},
        split={"protocol": "random", "val_frac": 0.1, "test_frac": 0.1, "scope": "pooled"}, id_space="toy")
    dm = _dm(tmp_path, BY_CONTEXT)
    got = _all_rows(dm)
    n = 40 * 8 + 20
    assert len(got) == n and not got.duplicated(["user", "item"]).any()  # every row once: disjoint, complete
    assert np.bincount(got["level"], minlength=3).tolist() == [n - 2 * round(0.1 * n), round(0.1 * n),
                                                               round(0.1 * n)]
    pool = read_bundle(prepare_bundle(whole, tmp_path / "cache")).interactions
    pool = pd.DataFrame({"user": pool["user"] + 1, "item": pool["item"] + 1,
                         "level": pool["split"].map({"train": 0, "val": 1, "test": 2}).to_numpy()})
    pd.testing.assert_frame_equal(got, pool.sort_values(["user", "item"]).reset_index(drop=True),
                                  check_dtype=False)  # same split whatever the slice (seeded by the id space)
    again = _all_rows(_dm(tmp_path, BY_CONTEXT))  # stable: a rebuild in another cache gives the same split
    pd.testing.assert_frame_equal(got, again)
    other = _all_rows(_dm(tmp_path, BY_CONTEXT, seed=1))
    assert (other["level"].to_numpy() != got["level"].to_numpy()).mean() > 0.1  # the seed moves it
    by_band = _all_rows(_dm(tmp_path, BY_BAND))  # another slicing of the same pool: the same split
    pd.testing.assert_frame_equal(got, by_band)


def _scaled_ages(tmp_path, shift=None):
    _files(tmp_path, shift)
    src = _source(tmp_path, "b0", BY_BAND["b0"])
    b = read_bundle(prepare_bundle(src, tmp_path / "cache"))
    return b, json.loads((b.path / "stats.json").read_text())["provenance"]["side_tables"]["dense_scaling"]["age"]


def _pool(tmp_path):
    """The interactions of the whole pool as one scenario (same id space, so the same pooled split)."""
    return read_bundle(prepare_bundle(TableScenario(
        "p", {"path": str(tmp_path / "inter.csv")}, {"user": "uid", "item": "iid", "rating": "stars"},
        label={"rule": "threshold", "threshold": 4},
        split={"protocol": "random", "val_frac": 0.1, "test_frac": 0.1, "scope": "pooled"}, id_space="toy"),
        tmp_path / "pool_cache")).interactions


def test_dense_scaled_with_train_statistics_only(tmp_path):
    b, stats = _scaled_ages(tmp_path)
    assert stats["scale"] == "minmax" and stats["shift"] >= 18.0
    inter = b.interactions
    pool = _pool(tmp_path)
    train_users = set(pool["user"][pool["split"] == "train"])
    unseen = sorted(set(range(N_USERS)) - train_users)  # users with val / test rows only
    assert unseen, "the toy data must have users without training rows"
    # give the unseen users extreme ages: a scaler fitted on all rows would move; one fitted on train must not
    raw = sorted(f"u{u}" for u in range(N_USERS))  # dense id = rank of the raw id
    b2, stats2 = _scaled_ages(tmp_path, {int(raw[d][1:]): 1000.0 + d for d in unseen})
    assert stats2 == stats
    seen = sorted(train_users)
    np.testing.assert_allclose(b2.users["age"].to_numpy()[seen], b.users["age"].to_numpy()[seen])
    assert b2.users["age"].to_numpy()[unseen].min() > 1.0  # unseen values are scaled, not clipped or refitted
    assert len(inter) > 0


def test_standard_scaling_uses_train_rows(tmp_path):
    _files(tmp_path)
    b = read_bundle(prepare_bundle(_source(tmp_path, "b1", BY_BAND["b1"], scale="standard"), tmp_path / "c"))
    scaled = b.users["age"].to_numpy()
    stats = json.loads((b.path / "stats.json").read_text())["provenance"]["side_tables"]["dense_scaling"]["age"]
    ages = np.array([18.0 + int(r[1:]) for r in sorted(f"u{u}" for u in range(N_USERS))])  # by dense id
    np.testing.assert_allclose(scaled * stats["divisor"] + stats["shift"], ages, rtol=1e-5)
    pool = _pool(tmp_path)
    train_ages = ages[pool["user"][pool["split"] == "train"].to_numpy()]  # each training row counts its user
    assert (stats["shift"], stats["divisor"]) == pytest.approx((train_ages.mean(), train_ages.std()))


def test_bad_slice_configs_get_one_line(tmp_path):
    _files(tmp_path)
    with pytest.raises(TableScenarioError, match=r"scenarios\.x\.source\.split\.scope=pooled needs id_space"):
        _source(tmp_path, "x", BY_BAND["b0"], id_space=None)
    with pytest.raises(TableScenarioError, match=r"scenarios\.x\.source\.slice\.values=\[\], expected a non-empty"):
        _source(tmp_path, "x", {"table": "users", "column": "band", "values": []})
    with pytest.raises(TableScenarioError, match=r"slice\.table='shops', expected one of"):
        _source(tmp_path, "x", {"table": "shops", "column": "band", "values": [1]})
    with pytest.raises(TableScenarioError, match=r"split\.scope='global', expected one of \['scenario', 'pooled'\]"):
        _source(tmp_path, "x", BY_BAND["b0"], scope="global")
    with pytest.raises(TableScenarioError, match=r"users\.fields\[1\]\.scale='log', expected one of"):
        _source(tmp_path, "x", BY_BAND["b0"], scale="log")
    src = _source(tmp_path, "x", {"table": "users", "column": "band", "values": [7]})
    with pytest.raises(TableScenarioError, match=r"column 'band' of users has none of the values \[7\] on any row; "
                                                 r"values found: \['0', '1', '2'\]"):
        src.build()
    pd.read_csv(tmp_path / "users.csv").assign(age="old").to_csv(tmp_path / "users.csv", index=False)
    with pytest.raises(TableScenarioError, match=r"users.csv: dense field column 'age' .* non-numeric value 'old'"):
        _source(tmp_path, "x", BY_BAND["b0"]).build()


def test_an_id_space_must_have_one_size(tmp_path):
    _files(tmp_path)
    (tmp_path / "b").mkdir()
    _files(tmp_path / "b")
    df = pd.read_csv(tmp_path / "b" / "inter.csv")
    df[df["uid"] != "u0"].to_csv(tmp_path / "b" / "inter.csv", index=False)  # one user fewer
    dm = MultiScenarioDataModule({"a": {"source": _source(tmp_path, "a", BY_BAND["b0"])},
                                  "b": {"source": _source(tmp_path / "b", "b", BY_BAND["b1"])}},
                                 tmp_path / "cache", history_len=0)
    with pytest.raises(BundleError, match=r"scenario 'b' shares id space 'toy' with 'a' but has 59 users / 25 "
                                          r"items, expected 60 / 25"):
        dm.setup()


RAW = default_raw_dir()


@pytest.mark.skipif(not (RAW / "movies" / "ml1m" / "users.dat").is_file(),
                    reason=f"ML-1M not at {RAW}/movies/ml1m (set UNIREC_RAW_DIR)")
def test_movielens_swr_domains_have_swrs_counts(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from tests.unit.test_scenarios_configs import ROOT

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("prepare", overrides=["scenario=movielens_swr", f"paths.raw_dir={RAW}",
                                            f"paths.root_dir={ROOT}"])
    want = {"movielens_d0": (210_747, 1_325, 0.5524), "movielens_d1": (395_556, 2_096, 0.5626),
            "movielens_d2": (393_906, 2_619, 0.5999)}
    assert list(cfg.scenarios) == list(want)
    for key, (rows, users, rate) in want.items():
        b = read_bundle(prepare_bundle(instantiate(cfg.scenarios[key].source), tmp_path))
        inter = b.interactions
        assert (len(inter), inter["user"].nunique()) == (rows, users)
        assert inter["label"].mean() == pytest.approx(rate, abs=5e-5)
        assert (b.spec.num_users, b.spec.num_items, b.spec.id_space) == (6040, 3706, "ml1m")
        share = inter["split"].value_counts(normalize=True)
        assert share["train"] == pytest.approx(0.8, abs=0.005) and share["test"] == pytest.approx(0.1, abs=0.005)
        assert [f.name for f in b.spec.user_fields] == ["gender", "occupation", "zip", "age"]
        assert b.users["age"].min() == 0.0 and b.users["age"].max() == 1.0  # min-max (train rows hold every age)


def test_full_ranking_of_a_slice_ranks_the_shared_items(tmp_path):
    from unirec_lab.evaluation.full_ranking import full_ranking_metrics
    from unirec_lab.models.baselines.mf import MatrixFactorization

    _files(tmp_path)
    dm = _dm(tmp_path, BY_BAND)
    sp = dm.space
    assert sp.id_owner == {"b1": "b0", "b2": "b0"}
    assert (sp.item_scenario[1:] == 0).all()  # the shared range belongs to the first slice ...
    assert (sp.item_scenario_of("b2")[1:] == 2).all() and sp.item_scenario_of("b0") is sp.item_scenario
    model = MatrixFactorization(sp, embedding_dim=4)
    out = full_ranking_metrics(model, dm.splits, dm.scenario_names, "b2", sp.item_scenario_of("b2"), ks=(5,))
    assert out["candidates"] == N_ITEMS and 0.0 <= out["recall@5"] <= 1.0  # ... and every slice ranks them all


def test_pooled_metrics_are_over_every_row():
    from sklearn.metrics import roc_auc_score

    from unirec_lab.evaluation.metrics import POOLED, ScenarioEvaluator

    g = torch.Generator().manual_seed(0)
    n = 300
    batch = {"scenario": torch.randint(0, 3, (n,), generator=g), "label": (torch.rand(n, generator=g) < 0.5).float(),
             "group": torch.arange(n), "row": torch.arange(n), "user": torch.arange(n), "item": torch.arange(n)}
    logit = batch["label"] * 0.5 + torch.randn(n, generator=g) + batch["scenario"]  # per-scenario offsets
    ev = ScenarioEvaluator(["a", "b", "c"], ["auc"], pooled=True)
    ev.update(batch, logit)
    res = ev.compute_from(ev.gathered())
    assert res[POOLED]["rows"] == n
    assert res[POOLED]["auc"] == pytest.approx(roc_auc_score(batch["label"].numpy(), logit.numpy()))
    assert res[POOLED]["auc"] != pytest.approx(np.mean([res[s]["auc"] for s in "abc"]))  # pooled, not averaged
    assert POOLED not in ScenarioEvaluator(["a"], ["auc"]).compute_from(ev.gathered())
    with pytest.raises(ValueError, match=r"pooled metrics are reported as 'all', which is also a scenario name"):
        ScenarioEvaluator(["all", "b"], ["auc"], pooled=True)
