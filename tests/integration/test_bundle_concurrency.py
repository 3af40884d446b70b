"""Concurrent prepares never break a reader: writers republish one bundle over and over (force=true) while a
reader loads it in a loop. Every read and every job must succeed.

Also a stand-alone harness (prints counts), e.g. against another checkout:
    PYTHONPATH=/path/to/checkout python tests/integration/test_bundle_concurrency.py --writers 2 --rounds 40
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

WORLD = dict(dim=8, num_topics=10, num_segments=6, num_tokens=50, tokens_per_topic=10, seed=3)


def _source():
    from unirec_lab.data.synthetic import SyntheticScenario

    return SyntheticScenario("x", WORLD, num_users=30, num_items=20, rows_per_user=10)


def _writer(cache: str, rounds: int, force: bool, out: mp.Queue) -> None:
    from unirec_lab.data.prepare import prepare_bundle

    fails, errors = 0, []
    for _ in range(rounds):
        try:
            prepare_bundle(_source(), cache, force=force)
        except Exception as e:  # noqa: BLE001 - counted and reported, that is the point of the harness
            fails += 1
            errors.append(f"{type(e).__name__}: {e}")
    out.put(("writer", rounds, fails, errors[:3]))


def _reader(cache: str, stop: mp.Event, out: mp.Queue) -> None:
    from unirec_lab.data.prepare import bundle_dir
    from unirec_lab.data.schema import read_bundle

    path = bundle_dir(_source(), cache)
    reads, fails, errors = 0, 0, []
    while not stop.is_set() or reads < 20:
        reads += 1
        try:
            b = read_bundle(path)
            assert len(b.interactions) == b.stats["rows"] > 0
        except Exception as e:  # noqa: BLE001
            fails += 1
            errors.append(f"{type(e).__name__}: {e}")
    out.put(("reader", reads, fails, errors[:3]))


def stress(cache: Path, writers: int = 3, rounds: int = 12, readers: int = 1) -> dict[str, list]:
    """Run the harness; returns ``{"writer": [(jobs, failed, errors)], "reader": [(reads, failed, errors)]}``."""
    from unirec_lab.data.prepare import prepare_bundle

    prepare_bundle(_source(), cache)  # readers start on a published bundle
    ctx = mp.get_context("spawn")
    out, stop = ctx.Queue(), ctx.Event()
    # even writers force a rebuild every round; odd ones prepare normally (use or rebuild the cache)
    procs = [ctx.Process(target=_writer, args=(str(cache), rounds, i % 2 == 0, out)) for i in range(writers)]
    procs += [ctx.Process(target=_reader, args=(str(cache), stop, out)) for _ in range(readers)]
    for p in procs:
        p.start()
    results: dict[str, list] = {"writer": [], "reader": []}
    for _ in range(writers):
        kind, n, failed, errors = out.get(timeout=120)
        results[kind].append((n, failed, errors))
    stop.set()
    for _ in range(readers):
        kind, n, failed, errors = out.get(timeout=120)
        results[kind].append((n, failed, errors))
    for p in procs:
        p.join(timeout=30)
    return results


def test_concurrent_forced_republishing_never_breaks_a_reader(tmp_path):
    t0 = time.perf_counter()
    res = stress(tmp_path, writers=3, rounds=12, readers=1)
    assert len(res["writer"]) == 3 and len(res["reader"]) == 1
    assert [(f, e) for _, f, e in res["writer"]] == [(0, [])] * 3
    reads, failed, errors = res["reader"][0]
    assert (failed, errors) == (0, []) and reads >= 20
    assert time.perf_counter() - t0 < 60
    from unirec_lab.data.prepare import bundle_dir, is_complete

    final = bundle_dir(_source(), tmp_path)
    assert is_complete(final)
    assert not [p for p in final.parent.iterdir() if ".link-" in p.name]  # no leftover temp links


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--readers", type=int, default=1)
    a = ap.parse_args()
    import unirec_lab

    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        r = stress(Path(d), a.writers, a.rounds, a.readers)
    jobs, jf = sum(n for n, _, _ in r["writer"]), sum(f for _, f, _ in r["writer"])
    reads, rf = sum(n for n, _, _ in r["reader"]), sum(f for _, f, _ in r["reader"])
    print(f"{unirec_lab.__file__}: {jf} of {jobs} jobs failed, {rf} of {reads} reads failed "
          f"({time.perf_counter() - t:.1f}s)")
    for kind in r:
        for _, _, errors in r[kind]:
            for e in errors:
                print(f"  {kind}: {e[:200]}")
