"""Export a finished run as a versioned serving artifact.

    unirec-export outputs/default/<time>_<uid>                  # -> outputs/default/<time>_<uid>/artifact
    unirec-export RUN_DIR --out served/shop                      # a new version vNNNN under served/shop

Writes the checkpoint(s) the run tested, feature spaces, id maps, catalogues, user histories, popularity and the
config into ``OUT/vNNNN/`` with a sha256 manifest, then points ``OUT/CURRENT`` at it (see
``unirec_lab/serve/artifact.py``). Run it where the run's scenario bundles are cached (the run's
``paths.cache_dir``; the same place ``unirec-explain`` needs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="unirec-export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path, help="a finished unirec-train run dir (holds result.json)")
    ap.add_argument("--out", type=Path, default=None, help="artifact root (default: RUN_DIR/artifact)")
    args = ap.parse_args(argv)
    from unirec_lab.serve.artifact import current_version, load_artifact
    from unirec_lab.serve.export import export_run

    try:
        root = export_run(args.run_dir, args.out)
        art = load_artifact(root)
    except (ValueError, OSError) as e:  # ArtifactError, RecordError, checkpoint and bundle errors are ValueErrors
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    sizes = ", ".join(f"{s} ({sc.num_users} users, {sc.num_items} items, model {sc.model})"
                      for s, sc in art.scenarios.items())
    print(f"exported {args.run_dir} -> {root}/{current_version(root)}: {sizes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
