#!/usr/bin/env bash
# The model-zoo table: every backbone x head (unified wiring) and the baselines, 1 epoch each on the four
# default real scenarios (seed 42, batch 4096). Writes bench.md / bench.json here. ~20 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
export WANDB_MODE=${WANDB_MODE:-disabled}
unirec-prepare scenario=real
python scripts/bench_zoo.py --scenario real --out "${OUT:-multirun/model_zoo}" -- data.batch_size=4096
cp "${OUT:-multirun/model_zoo}/bench.md" "${OUT:-multirun/model_zoo}/bench.json" experiments/model_zoo/
