"""The server as a real process (uvicorn on 127.0.0.1): an acknowledged feedback event survives kill -9, and
a hot-swap to a new artifact version under load fails no request. Loops are bounded in count and time."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from serve_helpers import exported

from unirec_lab.serve.artifact import load_artifact, write_version
from unirec_lab.serve.feedback import FeedbackStore

pytestmark = pytest.mark.slow
HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _post(port: int, path: str, body: dict, timeout: float = 30.0) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("POST", path, json.dumps(body), {"content-type": "application/json"})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        conn.close()


def _get(port: int, path: str) -> dict:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def _start(artifact: Path, db: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "unirec_lab.cli.serve", str(artifact), "--host", HOST,
                             "--port", str(port), "--feedback-db", str(db), "--log-level", "warning", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            if _get(port, "/health")["status"] == "ok":
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("server did not answer /health within 90 s")


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return exported(tmp_path_factory.mktemp("serve_proc"))


def test_acknowledged_feedback_survives_kill_9(artifact, tmp_path):
    db = tmp_path / "fb.sqlite"
    proc, port = _start(artifact, db)
    acked: list[str] = []
    lock, stop = threading.Lock(), threading.Event()

    def client(c: int) -> None:
        for i in range(500):  # bounded; the kill ends it much earlier
            if stop.is_set():
                return
            eid = f"c{c}-{i}"
            try:
                status, body = _post(port, "/feedback", {"event_id": eid, "scenario": "news", "user": str(i),
                                                         "item": "1", "label": 1, "ts": i}, timeout=5)
            except OSError:
                return
            if status == 200 and body.get("stored"):
                with lock:
                    acked.append(eid)
                    if len(acked) >= 60:
                        os.kill(proc.pid, signal.SIGKILL)  # right after a 200, mid-stream for the others
                        stop.set()
                        return

    threads = [threading.Thread(target=client, args=(c,)) for c in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and len(acked) >= 60
    stored = {e.event_id for e in FeedbackStore(db).events_since(0)}
    assert set(acked) <= stored, sorted(set(acked) - stored)[:5]


def test_hot_swap_under_load_fails_no_request(artifact, tmp_path):
    proc, port = _start(artifact, tmp_path / "fb.sqlite", "--poll-seconds", "0.2")
    results: list[tuple[int, str]] = []
    stop, guard = threading.Event(), threading.Lock()

    def client(c: int) -> None:
        deadline = time.monotonic() + 60
        for i in range(5000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            path, body = (("/recommend", {"scenario": "ecommerce", "user": str(i % 100), "k": 10}) if c % 2 == 0
                          else ("/score", {"scenario": "news", "user": str(i % 100), "items": ["1", "2", "3"]}))
            try:
                status, out = _post(port, path, body)
            except OSError as e:
                status, out = 599, {"error": repr(e)}
            with guard:
                results.append((status, out.get("version", out.get("error", ""))))

    try:
        threads = [threading.Thread(target=client, args=(c,)) for c in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        art = load_artifact(artifact)
        for entry in art.models.values():
            for v in entry.state.values():
                if v.is_floating_point():
                    v.mul_(0.9)
        new = write_version(artifact, art).name
        deadline = time.monotonic() + 60
        while _get(port, "/version")["version"] != new and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _get(port, "/version")["version"] == new
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(timeout=90)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    bad = [r for r in results if r[0] != 200]
    versions = {v for _, v in results}
    assert not bad, bad[:5]
    assert {"v0001", new} <= versions and len(results) > 50, (len(results), versions)
