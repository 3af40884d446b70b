#!/usr/bin/env bash
# The Scenario-Wise Rec heads (sarnet m2m adasparse adaptdhm epnet ppnet hamur m3oe) on the mean backbone, with
# the mlp / star / pepnet heads as references, 1 epoch each on the four default real scenarios (seed 42, batch
# 4096, one torch thread per job). Writes bench_swr.md / bench_swr.json here. ~15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
export WANDB_MODE=${WANDB_MODE:-disabled}
OUT=${OUT:-multirun/model_zoo_swr}
unirec-prepare scenario=real
python scripts/bench_zoo.py --set swr --scenario real --threads 1 --out "$OUT" -- data.batch_size=4096
cp "$OUT/bench.md" experiments/model_zoo/bench_swr.md
cp "$OUT/bench.json" experiments/model_zoo/bench_swr.json
