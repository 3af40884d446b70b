"""Serve an exported artifact over HTTP (FastAPI on uvicorn), loopback by default.

    unirec-serve outputs/default/<run>/artifact                          # http://127.0.0.1:8000
    unirec-serve ARTIFACT --port 8080 --feedback-db feedback.sqlite     # SQLite (WAL, synchronous=FULL)
    unirec-serve ARTIFACT --feedback-db postgresql://user@db/events     # any SQLAlchemy URL
    unirec-serve ARTIFACT --candidates 200                              # retrieval + exact re-rank of 200

Endpoints: POST /recommend {scenario, user, k, exclude_seen}, POST /score {scenario, user, items},
POST /feedback {event_id?, scenario, user, item, label, ts?}, GET /health, GET /version, POST /admin/reload
(loopback only). The server follows ARTIFACT/CURRENT (checked every --poll-seconds) and swaps to a new version
between requests. The feedback database defaults to ARTIFACT/feedback.sqlite.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="unirec-serve", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifact", type=Path, help="artifact root written by unirec-export (or one version dir)")
    ap.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--feedback-db", default=None, help="SQLite file path or SQLAlchemy URL "
                    "(default: ARTIFACT/feedback.sqlite)")
    ap.add_argument("--candidates", type=int, default=None, help="retrieval stage: re-rank this many items "
                    "exactly (default: exact scoring of the whole catalogue)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--poll-seconds", type=float, default=1.0, help="how often CURRENT is checked (0: never)")
    ap.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = ap.parse_args(argv)
    if not 0 < args.port < 65536:
        print(f"error: --port {args.port}: expected 1..65535", file=sys.stderr)
        return 2
    if args.threads < 1 or (args.candidates is not None and args.candidates < 1) or args.poll_seconds < 0:
        print(f"error: --threads {args.threads} / --candidates {args.candidates} / --poll-seconds "
              f"{args.poll_seconds}: expected threads >= 1, candidates >= 1, poll-seconds >= 0", file=sys.stderr)
        return 2
    import torch
    import uvicorn

    from unirec_lab.serve.artifact import resolve_version
    from unirec_lab.serve.feedback import FeedbackStore
    from unirec_lab.serve.service import Server, create_app

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    db = args.feedback_db or str(args.artifact / "feedback.sqlite")
    try:
        resolve_version(args.artifact)  # before the default feedback db creates anything under it
        server = Server(args.artifact, FeedbackStore(db), candidates=args.candidates,
                        poll_seconds=args.poll_seconds or None)
    except (ValueError, OSError) as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    print(f"serving {args.artifact} version {server.serving.version} on http://{args.host}:{args.port} "
          f"(feedback: {server.store.url})", flush=True)
    uvicorn.run(create_app(server), host=args.host, port=args.port, log_level=args.log_level,
                access_log=False, limit_concurrency=1024, timeout_graceful_shutdown=5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
