"""Update the live model from logged feedback; publish a new artifact version only if it does not regress.

    unirec-update ARTIFACT --since v0001                                  # feedback in ARTIFACT/feedback.sqlite
    unirec-update ARTIFACT --since v0003 --feedback-db postgresql://u@db/events --max-regression 0.005

Reads the feedback logged after version ``--since`` (its watermark), fine-tunes the ``CURRENT`` version's model(s)
on all but the newest ``--holdout`` fraction, compares current and updated on that newest slice
(``--metric``), and writes the next version (``CURRENT`` -> it; a running ``unirec-serve`` hot-swaps) unless the
metric dropped by more than ``--max-regression``. ``unirec_lab/serve/update.py`` says how.
Exit status: 0 published, 3 refused (regressed; one line says by how much), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifact", type=Path, help="artifact root (unirec-export's output)")
    ap.add_argument("--since", required=True, help="version whose feedback watermark to start after, e.g. v0001")
    ap.add_argument("--feedback-db", default=None, help="SQLite path or SQLAlchemy URL (default ARTIFACT/feedback.sqlite)")
    ap.add_argument("--holdout", type=float, default=0.2, help="newest fraction of the events held out (0.2)")
    ap.add_argument("--max-regression", type=float, default=0.0,
                    help="largest allowed drop of the held-out metric (default 0: never worse)")
    ap.add_argument("--metric", default="auc", help="held-out metric deciding publication (auc, gauc, ...)")
    ap.add_argument("--epochs", type=int, default=1, help="fine-tuning passes over the training events")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate (default: the run's)")
    ap.add_argument("--min-events", type=int, default=20, help="fewer events since --since: nothing to do (exit 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args(argv)

    import torch

    from unirec_lab.serve.artifact import ArtifactError, current_version
    from unirec_lab.serve.feedback import FeedbackStore, FeedbackStoreError
    from unirec_lab.serve.update import Regression, UpdateError, UpdateSettings, update_artifact
    from unirec_lab.utils.console import quiet_third_party

    quiet_third_party()
    torch.set_num_threads(max(1, args.threads))
    settings = UpdateSettings(holdout=args.holdout, max_regression=args.max_regression, metric=args.metric,
                              epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                              min_events=args.min_events, seed=args.seed)
    db = args.feedback_db or str(args.artifact / "feedback.sqlite")
    try:
        current_version(args.artifact)  # "not an artifact" comes before anything about the feedback db
        if "://" not in db and not Path(db).is_file():
            raise UpdateError(f"--feedback-db {db}: no such file (the server's feedback store)")
        store = FeedbackStore(db)
        try:
            res = update_artifact(args.artifact, store, args.since, settings)
        finally:
            store.close()
    except Regression as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except (UpdateError, ArtifactError, FeedbackStoreError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"published {res.published} (parent {res.parent}): held-out {settings.metric} {res.updated:.4f} vs "
          f"current {res.current:.4f} on the newest {res.heldout_events} of {res.events} events; new users "
          f"{res.new_users or 0}, new items {res.new_items or 0}; feedback seq {res.feedback_seq}; "
          f"{res.seconds:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
