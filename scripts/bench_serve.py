"""Load benchmark of ``unirec-serve`` on loopback: /recommend (k=10, the whole catalogue) and /feedback.

    .venv/bin/python scripts/bench_serve.py outputs/bench_serve/<run> --rate 100 --seconds 20
    .venv/bin/python scripts/bench_serve.py RUN_DIR --candidates 200 --recall-users 300

Exports ``RUN_DIR`` (or takes ``--artifact``), starts the server as a subprocess on 127.0.0.1 (one torch thread)
and measures, each bounded in requests and seconds:

1. **paced /recommend**: ``--rate`` requests/s for ``--seconds`` (open loop: request ``i`` is due at
   ``t0 + i / rate``; latency counts from when it was due, so a server or client that falls behind pays for
   it), seeded random known users of ``--scenario``; p50 / p90 / p99 / max latency and errors;
2. **sustained /recommend**: ``--concurrency`` closed-loop clients for ``--seconds``: requests/s;
3. **/feedback**: ``4 x --concurrency`` clients send ``--feedback-events`` events one per request (group commit,
   fsynced), then ``--concurrency`` clients send them in ``/feedback/batch`` requests of ``--batch-size``:
   events/s and latency;
4. with ``--candidates C``, in-process: share of the exact top-10 that the retrieval stage keeps on
   ``--recall-users`` users (the recall it costs) and the time per call of both paths.

The client threads share the machine with the server: the 1-minute load average and the busy share of all
CPUs (from /proc/stat) are sampled every second during each phase and printed with it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"


class LoadSampler:
    """Samples the 1-minute load average and the machine's busy CPU share every second while running."""

    def __init__(self) -> None:
        self.loads: list[float] = []
        self.busy: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _cpu() -> tuple[int, int]:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        return sum(vals) - idle, sum(vals)

    def _run(self) -> None:
        prev = self._cpu()
        while not self._stop.wait(1.0):
            self.loads.append(os.getloadavg()[0])
            cur = self._cpu()
            self.busy.append((cur[0] - prev[0]) / max(cur[1] - prev[1], 1))
            prev = cur

    def __enter__(self) -> LoadSampler:
        self.loads.append(os.getloadavg()[0])
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        if not self.loads:
            return "load n/a"
        busy = f", CPUs busy {100 * statistics.mean(self.busy):.0f}% of {os.cpu_count()}" if self.busy else ""
        return (f"load avg {statistics.mean(self.loads):.1f} (min {min(self.loads):.1f}, max {max(self.loads):.1f})"
                + busy)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Client:
    """One keep-alive HTTP connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection(HOST, port, timeout=30)

    def post(self, path: str, body: dict) -> int:
        data = json.dumps(body)
        try:
            self.conn.request("POST", path, data, {"content-type": "application/json"})
            r = self.conn.getresponse()
            r.read()
            return r.status
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
            return 599


def start_server(artifact: Path, db: Path, candidates: int | None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = [sys.executable, "-m", "unirec_lab.cli.serve", str(artifact), "--host", HOST, "--port", str(port),
           "--feedback-db", str(db), "--threads", "1", "--log-level", "warning", "--poll-seconds", "0"]
    if candidates:
        cmd += ["--candidates", str(candidates)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("server did not answer /health within 180 s")


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def paced(port: int, bodies: list[dict], rate: float, workers: int) -> tuple[list[float], int, float]:
    """Open-loop: body ``i`` is due at ``t0 + i / rate``; latency (ms) from when it was due."""
    due: queue.Queue = queue.Queue()
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def work() -> None:
        c = Client(port)
        while (job := due.get()) is not None:
            t_due, body = job
            wait = t_due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            status = c.post("/recommend", body)
            with lock:
                lat.append(1000 * (time.perf_counter() - t_due))
                errors[0] += status != 200

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    t0 = time.perf_counter() + 0.2
    for i, b in enumerate(bodies):
        due.put((t0 + i / rate, b))
    for _ in threads:
        due.put(None)
    for t in threads:
        t.join()
    return lat, errors[0], time.perf_counter() - t0


def closed_loop(port: int, path: str, make_body, clients: int, seconds: float, max_requests: int
                ) -> tuple[list[float], int, float]:
    """``clients`` threads send back to back until ``seconds`` or ``max_requests`` in all."""
    lat: list[float] = []
    errors = [0]
    count = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def work(c_idx: int) -> None:
        c = Client(port)
        while time.perf_counter() < stop_at:
            with lock:
                if count[0] >= max_requests:
                    return
                i = count[0]
                count[0] += 1
            t = time.perf_counter()
            status = c.post(path, make_body(i))
            with lock:
                lat.append(1000 * (time.perf_counter() - t))
                errors[0] += status != 200

    t0 = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, errors[0], time.perf_counter() - t0


def line(name: str, lat: list[float], errors: int, wall: float, sampler: LoadSampler) -> str:
    return (f"{name}: {len(lat)} requests in {wall:.1f}s = {len(lat) / wall:.0f}/s, errors {errors}; latency ms "
            f"p50 {pct(lat, 50):.1f} p90 {pct(lat, 90):.1f} p99 {pct(lat, 99):.1f} max {max(lat or [0]):.1f} | "
            f"{sampler.summary()}")


def recall_of_candidates(artifact: Path, scenario: str, candidates: int, users: list[str], k: int = 10) -> str:
    """Share of the exact top-k kept by the retrieval stage, and ms per call of both (in this process)."""
    import torch

    from unirec_lab.serve.state import ServingState

    torch.set_num_threads(1)
    exact = ServingState.load(artifact)
    approx = ServingState.load(artifact, candidates=candidates)
    kept, t_exact, t_approx = [], [], []
    for u in users:
        t = time.perf_counter()
        a = exact.recommend(scenario, u, k)[0]
        t_exact.append(time.perf_counter() - t)
        t = time.perf_counter()
        b = approx.recommend(scenario, u, k)[0]
        t_approx.append(time.perf_counter() - t)
        kept.append(len(set(a) & set(b)) / max(len(a), 1))
    return (f"retrieval stage candidates={candidates}: keeps {100 * np.mean(kept):.2f}% of the exact top-{k} "
            f"({len(users)} users; min {100 * min(kept):.0f}%, users with all {k} kept "
            f"{100 * np.mean(np.asarray(kept) == 1):.0f}%); ms per call in-process: exact "
            f"{1000 * statistics.median(t_exact):.1f}, candidates {1000 * statistics.median(t_approx):.1f} | "
            f"load {os.getloadavg()[0]:.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path, nargs="?", help="a finished run to export (or give --artifact)")
    ap.add_argument("--artifact", type=Path, default=None)
    ap.add_argument("--scenario", default="ecommerce")
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--feedback-events", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=100, help="events per /feedback/batch request")
    ap.add_argument("--candidates", type=int, default=None, help="serve with the retrieval stage")
    ap.add_argument("--recall-users", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from unirec_lab.serve.artifact import load_artifact
    from unirec_lab.serve.export import export_run

    tmp = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    artifact = args.artifact or export_run(args.run_dir, tmp / "artifact")
    art = load_artifact(artifact)
    sc = art.scenarios[args.scenario]
    print(f"artifact {artifact} {art.version}: {args.scenario} {sc.num_users} users x {sc.num_items} items, "
          f"model {art.info.get('run_name') or sc.model}; candidates {args.candidates or 'exact'}", flush=True)
    rng = np.random.default_rng(args.seed)
    n = int(args.rate * args.seconds)
    users = sc.user_ids[rng.integers(0, sc.num_users, size=max(n, args.recall_users))].tolist()
    bodies = [{"scenario": args.scenario, "user": u, "k": 10} for u in users[:n]]
    out: dict = {"candidates": args.candidates, "items": sc.num_items}
    proc, port = start_server(artifact, tmp / "feedback.sqlite", args.candidates)
    try:
        closed_loop(port, "/recommend", lambda i: bodies[i % len(bodies)], 2, 2.0, 50)  # warm-up
        with LoadSampler() as s:
            lat, err, wall = paced(port, bodies, args.rate, workers=args.concurrency)
        print(line(f"/recommend paced at {args.rate:.0f}/s", lat, err, wall, s), flush=True)
        out["paced"] = {"rate": args.rate, "n": len(lat), "errors": err, "p50": pct(lat, 50), "p99": pct(lat, 99),
                        "load": s.summary()}
        with LoadSampler() as s:
            lat, err, wall = closed_loop(port, "/recommend", lambda i: bodies[i % len(bodies)],
                                         args.concurrency, args.seconds, 100_000)
        print(line(f"/recommend sustained, {args.concurrency} clients", lat, err, wall, s), flush=True)
        out["sustained"] = {"rps": len(lat) / wall, "errors": err, "p50": pct(lat, 50), "p99": pct(lat, 99),
                            "load": s.summary()}
        fb = lambda i: {"event_id": f"bench-{i}", "scenario": args.scenario, "user": users[i % len(users)],  # noqa: E731
                        "item": str(i % sc.num_items), "label": 1, "ts": 1_700_000_000 + i}
        with LoadSampler() as s:
            lat, err, wall = closed_loop(port, "/feedback", fb, 4 * args.concurrency, 4 * args.seconds,
                                         args.feedback_events)
        print(line(f"/feedback, {4 * args.concurrency} clients (fsynced group commits)", lat, err, wall, s),
              flush=True)
        out["feedback"] = {"eps": len(lat) / wall, "errors": err, "p50": pct(lat, 50), "p99": pct(lat, 99),
                           "load": s.summary()}
        per = args.batch_size
        batch = lambda i: {"events": [fb(args.feedback_events + i * per + j) for j in range(per)]}  # noqa: E731
        with LoadSampler() as s:
            lat, err, wall = closed_loop(port, "/feedback/batch", batch, args.concurrency, 4 * args.seconds,
                                         max(1, args.feedback_events // per))
        eps = len(lat) * per / wall
        print(f"/feedback/batch of {per}, {args.concurrency} clients: {len(lat) * per} events in {wall:.1f}s = "
              f"{eps:.0f} events/s, errors {err}; latency per batch ms p50 {pct(lat, 50):.1f} p99 {pct(lat, 99):.1f}"
              f" | {s.summary()}", flush=True)
        out["feedback_batch"] = {"eps": eps, "errors": err, "p50": pct(lat, 50), "p99": pct(lat, 99),
                                 "load": s.summary()}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    if args.candidates:
        msg = recall_of_candidates(artifact, args.scenario, args.candidates, users[:args.recall_users])
        print(msg, flush=True)
        out["recall"] = msg
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
