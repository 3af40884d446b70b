"""Texts per second of the frozen text encoder on NeMig articles (``title . abstract``), per thread count.

    python scripts/bench_text_encoder.py --language en --n 512 --threads 1 2
Needs the raw data (``$UNIREC_RAW_DIR`` or ``../shared/data``) and the text extra. Prints one line per setting.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from unirec_lab.data.scenarios.mind import read_tsv
from unirec_lab.data.scenarios.nemig import NEWS_COLUMNS
from unirec_lab.data.scenarios.raw import default_raw_dir
from unirec_lab.data.scenarios.text_embedding import join_columns
from unirec_lab.data.text_encoder import EncoderSpec, encode_texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--language", default="en", choices=["en", "de"])
    ap.add_argument("--n", type=int, default=512, help="articles to encode (the first n of news.tsv)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    news = read_tsv(default_raw_dir() / "news" / f"nemig_{args.language}" / "news.tsv", NEWS_COLUMNS)
    texts = join_columns(news.head(args.n), ["title", "abstract"], "bench").tolist()
    spec = EncoderSpec(batch_size=args.batch_size)
    encode_texts(texts[:8], spec, progress=False)  # load + warm up once
    load = os.getloadavg()[0]
    for t in args.threads:
        torch.set_num_threads(t)
        t0 = time.perf_counter()
        encode_texts(texts, spec, progress=False)
        secs = time.perf_counter() - t0
        print(f"{args.language}: {len(texts)} texts, {t} thread(s), batch {args.batch_size}: {secs:.1f} s, "
              f"{len(texts) / secs:.1f} texts/s (load average {load:.1f} at start)")


if __name__ == "__main__":
    main()
