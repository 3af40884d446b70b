"""The HTTP service through FastAPI's TestClient: every endpoint, the answers equal the model's own scores, and
every bad input is a 4xx with a one-line reason (never a 500)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from serve_helpers import exported

from unirec_lab.serve.feedback import FeedbackStore
from unirec_lab.serve.service import MAX_BODY_BYTES, Server, create_app

warnings.filterwarnings("ignore", message=".*httpx.*")
from starlette.testclient import TestClient  # noqa: E402


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return exported(tmp_path_factory.mktemp("serve_svc"))


@pytest.fixture
def served(artifact, tmp_path):
    server = Server(artifact, FeedbackStore(tmp_path / "fb.sqlite"), poll_seconds=None)
    with TestClient(create_app(server), client=("127.0.0.1", 5000)) as client:
        yield client, server


def _known_user(server, scenario="ecommerce"):
    sc = server.serving.artifact.scenarios[scenario]
    counts = np.diff(sc.seen_indptr)
    return int(np.argmax(counts)), sc  # the user with the most positives: masking matters


def test_health_and_version(served):
    client, server = served
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["version"] == "v0001" and "news" in h["scenarios"]
    assert h["feedback"] == {"dialect": "sqlite", "journal_mode": "wal", "synchronous": "FULL"}
    v = client.get("/version").json()
    assert v["version"] == "v0001" and v["feedback_seq"] == 0 and v["models"]["news"] == "global"


def test_recommend_is_the_exact_top_k_with_seen_masked(served):
    client, server = served
    user, sc = _known_user(server)
    r = client.post("/recommend", json={"scenario": "ecommerce", "user": str(user), "k": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fallback"] is None and len(body["items"]) == 7
    # brute force: the model on every (user, item) row, earlier positives removed
    state = server.serving
    model, space = state.artifact.model_for("ecommerce")
    rows = state.rows("ecommerce", user)
    cat = state.artifact.catalogue("ecommerce")
    batch = {k: v.repeat_interleave(len(cat), 0) for k, v in rows.items()}
    batch["item"] = cat
    with torch.no_grad():
        scores = model(batch).numpy()
    seen = sc.seen_items[sc.seen_indptr[user]:sc.seen_indptr[user + 1]]
    assert len(seen) > 0
    scores[seen] = -np.inf
    want = np.argsort(-scores, kind="stable")[:7]
    assert [it["item"] for it in body["items"]] == [str(i) for i in want]
    assert np.allclose([it["score"] for it in body["items"]], scores[want], atol=1e-5)
    with_seen = client.post("/recommend", json={"scenario": "ecommerce", "user": str(user), "k": 7,
                                                "exclude_seen": False}).json()
    assert set(with_seen["items"][0]) == {"item", "score"} and with_seen["items"][0]["score"] >= body["items"][0]["score"]


def test_unknown_user_gets_popularity(served):
    client, server = served
    sc = server.serving.artifact.scenarios["news"]
    body = client.post("/recommend", json={"scenario": "news", "user": "someone-new", "k": 3}).json()
    assert body["fallback"] == "popularity"
    assert [it["score"] for it in body["items"]] == sorted(sc.popularity, reverse=True)[:3]
    s = client.post("/score", json={"scenario": "news", "user": "someone-new", "items": ["0", "1"]}).json()
    assert s["fallback"] == "popularity" and [x["score"] for x in s["scores"]] == sc.popularity[:2].tolist()


def test_score_equals_the_model(served):
    client, server = served
    user, _ = _known_user(server, "social")
    r = client.post("/score", json={"scenario": "social", "user": str(user), "items": ["3", "0", "5"]})
    assert r.status_code == 200, r.text
    state = server.serving
    model, space = state.artifact.model_for("social")
    rows = state.rows("social", user)
    batch = {k: v.repeat_interleave(3, 0) for k, v in rows.items()}
    batch["item"] = torch.tensor([3, 0, 5]) + space.item_offset["social"] + 1
    with torch.no_grad():
        want = model(batch).tolist()
    assert [x["item"] for x in r.json()["scores"]] == ["3", "0", "5"]
    assert np.allclose([x["score"] for x in r.json()["scores"]], want, atol=1e-6)


def test_feedback_is_stored_idempotent_and_enters_history(served, tmp_path):
    client, server = served
    user, sc = _known_user(server)
    top = client.post("/recommend", json={"scenario": "ecommerce", "user": str(user), "k": 1}).json()["items"][0]
    ev = {"event_id": "ev-1", "scenario": "ecommerce", "user": str(user), "item": top["item"], "label": 1,
          "ts": 1_700_000_000}
    first = client.post("/feedback", json=ev)
    assert first.status_code == 200 and first.json() == {"event_id": "ev-1", "stored": True, "duplicate": False}
    assert client.post("/feedback", json=ev).json()["duplicate"] is True
    auto = client.post("/feedback", json={k: v for k, v in ev.items() if k not in ("event_id", "ts")}).json()
    assert len(auto["event_id"]) == 32 and auto["duplicate"] is False
    events = FeedbackStore(tmp_path / "fb.sqlite").events_since(0)
    assert [e.event_id for e in events] == ["ev-1", auto["event_id"]] and events[0].ts == 1_700_000_000
    # the clicked item is now a previous positive: masked, and the newest entry of the user's history
    again = client.post("/recommend", json={"scenario": "ecommerce", "user": str(user), "k": 5}).json()
    assert top["item"] not in [it["item"] for it in again["items"]]
    assert int(server.serving.rows("ecommerce", user)["history"][0, -1]) == (
        int(top["item"]) + server.serving.artifact.spaces["joint"].item_offset["ecommerce"] + 1)
    # a restarted server replays the logged feedback on top of the artifact
    restarted = Server(server.root, FeedbackStore(tmp_path / "fb.sqlite"), poll_seconds=None)
    assert int(top["item"]) in restarted.serving.seen("ecommerce", user).tolist()
    restarted.writer.close()


def test_feedback_batch(served, tmp_path):
    client, _ = served
    evs = [{"event_id": f"b{i}", "scenario": "news", "user": "1", "item": str(i), "label": 1, "ts": i} for i in range(3)]
    assert client.post("/feedback/batch", json={"events": evs + evs[:1]}).json() == {"stored": 4, "duplicates": ["b0"]}
    assert client.post("/feedback/batch", json={"events": evs[1:]}).json()["duplicates"] == ["b1", "b2"]
    assert [e.event_id for e in FeedbackStore(tmp_path / "fb.sqlite").events_since(0)] == ["b0", "b1", "b2"]


BAD = [
    ("/recommend", {"scenario": "sports", "user": "1", "k": 5}, 404, "scenario 'sports' is not served; served: "),
    ("/recommend", {"scenario": "news", "user": "a b", "k": 5}, 422, "user: String should match pattern"),
    ("/recommend", {"scenario": "news", "user": "../etc", "k": 5}, 422, "user: String should match pattern"),
    ("/recommend", {"scenario": "news", "user": "", "k": 5}, 422, "user: String should match pattern"),
    ("/recommend", {"scenario": "news", "user": "1", "k": 0}, 422, "k: Input should be greater than or equal to 1"),
    ("/recommend", {"scenario": "news", "user": "1", "k": 5000}, 422, "k: Input should be less than or equal to 1000"),
    ("/recommend", {"scenario": "news", "user": "1", "k": "ten"}, 422, "k: Input should be a valid integer"),
    ("/recommend", {"scenario": "news", "user": "1", "kk": 3}, 422, "kk: Extra inputs are not permitted"),
    ("/recommend", {"scenario": "news"}, 422, "user: Field required"),
    ("/recommend", [1, 2], 422, "Input should be a valid dictionary"),
    ("/score", {"scenario": "news", "user": "1", "items": []}, 422, "items: List should have at least 1 item"),
    ("/score", {"scenario": "news", "user": "1", "items": ["1"] * 1001}, 422,
     "items: List should have at most 1000 items"),
    ("/score", {"scenario": "news", "user": "1", "items": ["999999"]}, 404, "item '999999' is not in the catalogue"),
    ("/score", {"scenario": "news", "user": "1", "items": ["x y"]}, 422, "items.0: String should match pattern"),
    ("/feedback", {"scenario": "news", "user": "1", "item": "2", "label": 2}, 422,
     "label: Input should be less than or equal to 1"),
    ("/feedback", {"scenario": "news", "user": "1", "item": "2", "label": 1, "ts": -5}, 422,
     "ts: Input should be greater than or equal to 0"),
    ("/feedback", {"scenario": "nope", "user": "1", "item": "2", "label": 1}, 404, "scenario 'nope' is not served"),
    ("/feedback", {"scenario": "news", "user": "1", "item": "2", "label": 1, "event_id": "e" * 200}, 422,
     "event_id: String should match pattern"),
    ("/feedback/batch", {"events": []}, 422, "events: List should have at least 1 item"),
    ("/feedback/batch", {"events": [{"scenario": "news", "user": "1", "item": "2", "label": 1}] * 1001}, 422,
     "events: List should have at most 1000 items"),
    ("/feedback/batch", {"events": [{"scenario": "news", "user": "1", "item": "2", "label": 1},
                                    {"scenario": "news", "user": "1", "item": "2"}]}, 422, "events.1.label: Field required"),
    ("/feedback/batch", {"events": [{"scenario": "moon", "user": "1", "item": "2", "label": 1}]}, 404,
     "scenario 'moon' is not served"),
]


@pytest.mark.parametrize("path,body,status,message", BAD)
def test_bad_input_is_a_4xx_with_one_line(served, path, body, status, message):
    client, _ = served
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert message in err and "\n" not in err


def test_malformed_and_oversized_bodies(served):
    client, _ = served
    r = client.post("/recommend", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json() == {"error": "body: not valid JSON"}
    big = json.dumps({"scenario": "news", "user": "1", "items": ["1"] * (MAX_BODY_BYTES // 4)})
    r = client.post("/score", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and f"larger than {MAX_BODY_BYTES} bytes" in r.json()["error"]
    chunked = client.post("/score", content=iter([big.encode()[:MAX_BODY_BYTES], big.encode()[MAX_BODY_BYTES:]]),
                          headers={"content-type": "application/json"})  # no content-length: counted as read
    assert chunked.status_code == 413


def test_admin_reload_is_loopback_only_and_swaps(served, artifact, tmp_path):
    client, server = served
    assert client.post("/admin/reload").json() == {"swapped": False, "version": "v0001"}
    with TestClient(create_app(server), client=("10.0.0.5", 5000)) as remote:
        r = remote.post("/admin/reload")
        assert r.status_code == 403 and "loopback clients only" in r.json()["error"]
    from unirec_lab.serve.artifact import load_artifact, set_current, write_version

    art = load_artifact(artifact)
    for state in (e.state for e in art.models.values()):
        for v in state.values():
            if v.is_floating_point():
                v.mul_(0.5)
    v2 = write_version(artifact, art)
    try:
        assert client.post("/admin/reload").json() == {"swapped": True, "version": v2.name}
        assert client.get("/version").json()["version"] == v2.name
        v3 = write_version(artifact, art)  # published, then tampered with: refused, v2 keeps serving
        (v3 / "config.json").write_text("{}")
        r = client.post("/admin/reload")
        assert r.status_code == 409 and "config.json: sha256" in r.json()["error"] and "\n" not in r.json()["error"]
        assert client.get("/version").json()["version"] == v2.name
        assert "refusing the artifact" in client.get("/health").json()["last_reload_error"]
    finally:
        set_current(artifact, "v0001")
