"""``unirec-update``: publishes a fine-tuned version that improves on the newest feedback, refuses one that
regresses (label-flipped training feedback), and answers bad input with exit 2 and one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from serve_helpers import exported

from unirec_lab.cli.update import main
from unirec_lab.serve.artifact import current_version, load_artifact, versions
from unirec_lab.serve.feedback import Event, FeedbackStore
from unirec_lab.serve.finetune import score

LIKED = [str(i) for i in range(0, 40, 2)]  # the planted rule: the users below like even items, not odd ones
ITEMS = [str(i) for i in range(40)] + ["new-item-a", "new-item-b"]
USERS = [str(u) for u in range(30)] + ["new-user-1", "new-user-2"]


def feedback(n: int = 640, flip_training: bool = False, holdout: float = 0.2) -> list[Event]:
    """``n`` events in time order; the newest ``holdout`` follow the rule, the rest too (or its opposite)."""
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        item = ITEMS[int(rng.integers(len(ITEMS)))]
        liked = item in LIKED or item == "new-item-a"
        if flip_training and k < n * (1 - holdout):
            liked = not liked
        out.append(Event("social", USERS[int(rng.integers(len(USERS)))], item, float(liked), 1_000 + k,
                         f"e{k}"))
    return out


@pytest.fixture(scope="module")
def artifact_template(tmp_path_factory):
    torch.set_num_threads(1)
    return exported(tmp_path_factory.mktemp("update"))


def fresh(template: Path, tmp_path: Path, events: list[Event]) -> Path:
    root = tmp_path / "artifact"
    shutil.copytree(template, root)
    store = FeedbackStore(root / "feedback.sqlite")
    store.append_many(events)
    store.close()
    return root


FLAGS = ["--lr", "0.02", "--epochs", "4", "--batch-size", "64"]


def test_publishes_an_improving_update_with_new_ids(artifact_template, tmp_path, capsys):
    root = fresh(artifact_template, tmp_path, feedback())
    assert main([str(root), "--since", "v0001", *FLAGS]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("published v0002 (parent v0001)") and "\n" not in line
    assert current_version(root) == "v0002" and versions(root) == ["v0001", "v0002"]
    art = load_artifact(root)  # verified against its manifest
    upd = art.info["update"]
    assert upd["updated"] > upd["current"] + 0.1, upd
    assert art.info["feedback_seq"] == 640 and art.info["parent"] == "v0001"
    sc, old = art.scenarios["social"], load_artifact(root / "v0001").scenarios["social"]
    # new ids follow the known ones, in the order they first appeared
    assert set(sc.user_ids[-2:]) == {"new-user-1", "new-user-2"} and len(sc.user_ids) == len(old.user_ids) + 2
    assert set(sc.item_ids[-2:]) == {"new-item-a", "new-item-b"}
    new_user = list(sc.user_ids).index("new-user-1")
    hist = sc.history[new_user]
    liked_dense = {int(i) for i in LIKED} | {list(sc.item_ids).index("new-item-a")}
    assert (hist >= 0).any() and set(hist[hist >= 0].tolist()) <= liked_dense
    model, space = art.model_for("social")
    s = space.scenarios.index("social")
    off_u, off_i = space.user_offset["social"] + 1, space.item_offset["social"] + 1
    rows = {"scenario": torch.full((2,), s), "user": torch.tensor([off_u + new_user] * 2),
            "item": torch.tensor([off_i + 0, off_i + 1]), "history": torch.zeros(2, art.history_len, dtype=torch.long)}
    liked, disliked = score(model, rows)
    assert liked > disliked  # the published weights carry the rule, for a user the model never saw


def test_refuses_a_regressing_update_and_publishes_nothing(artifact_template, tmp_path, capsys):
    root = fresh(artifact_template, tmp_path, feedback(flip_training=True))
    assert main([str(root), "--since", "v0001", *FLAGS]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: refused: held-out auc") and "regressed by" in err and "\n" not in err
    assert current_version(root) == "v0001" and versions(root) == ["v0001"]


def test_a_second_update_starts_after_the_first_ones_watermark(artifact_template, tmp_path, capsys):
    root = fresh(artifact_template, tmp_path, feedback())
    assert main([str(root), "--since", "v0001", *FLAGS]) == 0
    capsys.readouterr()
    assert main([str(root), "--since", "v0002", *FLAGS]) == 2  # no feedback after v0002's watermark yet
    assert "0 feedback event(s) since v0002 (seq > 640)" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--since", "v0009"], "--since v0009: no such version"),
    (["--since", "v0001", "--holdout", "1.5"], "--holdout 1.5: expected a fraction in (0, 1)"),
    (["--since", "v0001", "--metric", "nope"], "unknown metric 'nope'"),
    (["--since", "v0001", "--min-events", "5000"], "640 feedback event(s) since v0001 (seq > 0); need at least 5000"),
    (["--since", "v0001", "--feedback-db", "/nonexistent/fb.sqlite"], "--feedback-db /nonexistent/fb.sqlite: no such"),
])
def test_bad_input_exits_2_with_one_line(artifact_template, tmp_path, capsys, args, message):
    root = fresh(artifact_template, tmp_path, feedback())
    assert main([str(root), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err
    assert versions(root) == ["v0001"]


@pytest.mark.slow  # a spawned console script: ~7 s idle, most of it importing torch; ~21 s at load 11
def test_a_directory_that_is_not_an_artifact_is_named_before_the_feedback_db(tmp_path):
    """The installed script, run from a temp dir: "not an artifact" (the path, what was expected) comes first,
    not the missing ``feedback.sqlite`` the directory would lack too."""
    import os
    import subprocess
    import sys

    script = Path(sys.executable).with_name("unirec-update")
    if not script.is_file():
        pytest.skip(f"{script}: the console script is not installed in this environment")
    plain = tmp_path / "not_an_artifact"
    plain.mkdir()
    out = subprocess.run([str(script), str(plain), "--since", "v0001"], cwd=tmp_path, capture_output=True,
                         text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    err = out.stderr.strip()
    assert out.returncode == 2, err
    assert err == (f"error: {plain}: not an artifact (no CURRENT file; expected an artifact root made by "
                   "unirec-export)"), err
    assert "feedback" not in err


def test_feedback_for_an_unknown_scenario_is_named(artifact_template, tmp_path, capsys):
    root = fresh(artifact_template, tmp_path, [*feedback(), Event("cinema", "1", "2", 1.0, 5_000, "x1")])
    assert main([str(root), "--since", "v0001"]) == 2
    assert "feedback for scenario(s) ['cinema'] not in the artifact" in capsys.readouterr().err


def test_the_server_state_serves_the_published_version_to_new_users(artifact_template, tmp_path):
    """The published version loads as the server loads it; a user and an item that exist only in the feedback
    are served by the model (no popularity fallback), with the rule it learned and the user's feedback masked."""
    from unirec_lab.serve.state import ServingState

    root = fresh(artifact_template, tmp_path, feedback())
    assert main([str(root), "--since", "v0001", *FLAGS]) == 0
    state = ServingState.load(root)
    assert state.version == "v0002" and state.feedback_seq == 640
    items, scores, fallback = state.recommend("social", "new-user-1", k=10, exclude_seen=False)
    assert fallback is None and len(items) == 10
    liked, _ = state.score("social", "new-user-1", ["new-item-a"])
    disliked, _ = state.score("social", "new-user-1", ["new-item-b"])
    assert liked[0] > disliked[0]
    seen = set(state.artifact.scenarios["social"].item_ids[state.seen("social", 30)])
    unseen, _, _ = state.recommend("social", "30", k=5)
    assert not seen & set(unseen)


def test_per_scenario_artifact_updates_only_the_model_with_feedback(tmp_path, capsys):
    """A per-scenario export holds one model (and space) per scenario; feedback for one scenario changes only its
    model, and the version serves every scenario."""
    from unirec_lab.serve.state import ServingState

    root = fresh(exported(tmp_path / "ps", ["model=per_scenario"]), tmp_path, feedback())
    assert main([str(root), "--since", "v0001", *FLAGS]) == 0
    old, new = load_artifact(root / "v0001"), load_artifact(root)
    assert len(new.models) == 4
    for name, entry in new.models.items():
        same = all(torch.equal(v, old.models[name].state[k]) for k, v in entry.state.items())
        assert same == (name != new.scenarios["social"].model), name
    state = ServingState.load(root)
    assert state.recommend("social", "new-user-1", 3)[2] is None and state.recommend("news", "3", 3)[2] is None
