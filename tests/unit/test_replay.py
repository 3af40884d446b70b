"""Replay pieces (serve/replay.py, evaluation/bootstrap.py, cli/replay.py) on hand-made arrays; the end-to-end
replay with a planted shift is tests/slow/test_replay.py."""

from __future__ import annotations

import numpy as np
import pytest

from unirec_lab.evaluation.bootstrap import paired_bootstrap
from unirec_lab.evaluation.metrics import gauc
from unirec_lab.serve.replay import ReplayError, ReplaySettings, assign_windows


def data(n_groups: int = 60, size: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size)
    y = (rng.uniform(size=len(g)) < 0.4).astype(float)
    good = y + rng.normal(0, 0.8, len(g))
    bad = rng.normal(0, 1, len(g))
    return y, g, good, bad


def test_paired_bootstrap_values_intervals_and_differences():
    y, g, good, bad = data()
    res = paired_bootstrap(y, {"static": bad, "updated": good, "same": bad.copy()}, g, ["auc", "gauc"],
                           reference="static", replicates=100, seed=1)
    assert res["updated"]["gauc"]["value"] == pytest.approx(gauc(y, good, g))
    for arm in res.values():
        for c in arm.values():
            assert c["lo"] <= c["value"] <= c["hi"]
    assert "delta" not in res["static"]["auc"]
    assert res["updated"]["auc"]["delta_lo"] > 0.1  # clearly better: the paired interval excludes 0
    assert res["same"]["auc"]["delta"] == 0 and res["same"]["auc"]["delta_lo"] == res["same"]["auc"]["delta_hi"] == 0
    again = paired_bootstrap(y, {"static": bad, "updated": good}, g, ["auc"], reference="static", replicates=100,
                             seed=1)
    assert again["updated"]["auc"] == res["updated"]["auc"]  # seeded


def test_bootstrap_resamples_whole_groups():
    """One group holds all the signal: resampling rows would keep it in every replicate, groups do not."""
    g = np.repeat(np.arange(20), 5)
    y = np.tile([1.0, 0, 0, 0, 0], 20)
    z = np.zeros(100)
    z[:5] = [5, -5, -5, -5, -5]  # group 0 perfectly ranked, the rest ties
    res = paired_bootstrap(y, {"m": z}, g, ["gauc"], replicates=200, seed=0)
    assert res["m"]["gauc"]["lo"] == pytest.approx(0.5) and res["m"]["gauc"]["hi"] > 0.5
    none = paired_bootstrap(y, {"m": z}, g, ["gauc"], replicates=0)
    assert np.isnan(none["m"]["gauc"]["lo"])


def test_windows_by_rows_and_by_calendar_per_scenario():
    ts = np.array([5, 1, 2, 2, 3, 4, 100, 200, 86400 * 3 + 5, 86400 * 4 + 1])
    scen = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    w = assign_windows(ts, scen, ReplaySettings(windows=2))
    assert w[:6].tolist() == [1, 0, 0, 0, 1, 1]  # ties (ts 2) stay in one window
    assert w[6:].tolist() == [0, 0, 1, 1]
    d = assign_windows(ts, scen, ReplaySettings(window_seconds=86400))
    assert d[6:].tolist() == [0, 0, 1, 2] and set(d[:6]) == {0}


@pytest.mark.parametrize("kw, message", [
    (dict(windows=1), "--windows 1: expected >= 2"),
    (dict(window_seconds=0), "--window-seconds 0"),
    (dict(lr=-1.0), "--lr -1.0"),
    (dict(epochs=0), "--epochs 0"),
    (dict(metrics=("auc", "acc")), "--metrics: unknown metric 'acc'"),
])
def test_bad_settings_fail_with_one_line(kw, message):
    with pytest.raises(ReplayError) as e:
        ReplaySettings(**kw).check()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_cli_refuses_bad_flags_before_training(tmp_path):
    from unirec_lab.cli.replay import main

    with pytest.raises(SystemExit) as e:
        main(["--windows", "1", "--out", str(tmp_path / "o")])
    assert str(e.value) == "error: --windows 1: expected >= 2 (window 0 is only revealed)"
    with pytest.raises(SystemExit) as e:
        main(["--run", str(tmp_path), "--out", str(tmp_path / "o2")])
    assert str(e.value).startswith(f"error: {tmp_path}/result.json: not found")


def test_replay_sources_reject_bad_settings_in_one_line():
    from unirec_lab.data.scenarios.ciao import CiaoScenario
    from unirec_lab.data.synthetic import SyntheticScenario

    with pytest.raises(ValueError, match=r"^scenario 'social': split='weekly', expected 'user_chrono' or "
                                         r"'temporal'$"):
        CiaoScenario("social", "/nowhere", split="weekly")
    with pytest.raises(ValueError, match=r"^scenario 's': shift_at=1.5, expected null or a value in \(0, 1\)$"):
        SyntheticScenario("s", {}, shift_at=1.5)


def test_defaults_keep_their_fingerprints():
    """The replay options add a fingerprint key only when set, so existing cached bundles stay valid."""
    from unirec_lab.data.scenarios.ciao import CiaoScenario
    from unirec_lab.data.synthetic import SyntheticScenario

    assert "split" not in CiaoScenario("social", "/nowhere").params
    assert CiaoScenario("social", "/nowhere", split="temporal").params["split"] == "temporal"
    assert "shift_at" not in SyntheticScenario("s", {}).fingerprint()
    assert SyntheticScenario("s", {}, shift_at=0.5).fingerprint()["shift_at"] == 0.5


def test_temporal_ciao_split_cuts_by_time():
    from unirec_lab.data.scenarios.interactions import rated_interactions

    ts = np.arange(20)[::-1]  # rows in reverse time order, two users
    p = dict(val_frac=0.1, test_frac=0.2, min_user_ratings=3, positive_threshold=4, split="temporal")
    _, _, inter = rated_interactions(np.arange(20) % 2, np.arange(20), ts, np.full(20, 5.0), p)
    assert set(inter.loc[inter["split"] == "test", "ts"]) == {16, 17, 18, 19}
    assert set(inter.loc[inter["split"] == "val", "ts"]) == {14, 15}
