#!/usr/bin/env bash
# Text embeddings and never-seen items on NeMig (English + German): regenerates table.md / table.csv here.
#   bash experiments/text_cold_start/run.sh                 # 3 seeds (the table's protocol; ~30 min on 2 cores)
#   SEEDS=1 bash experiments/text_cold_start/run.sh         # a quicker look (do not check that in)
# Smoke run: EXTRA is appended to every training job, HERE receives the table, CHECK=0 skips expected.yaml:
#   EXTRA="debug=fast" SEEDS=1,2 OUT=/tmp/tcs HERE=/tmp/tcs/tables CHECK=0 bash experiments/text_cold_start/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=${HERE:-experiments/text_cold_start}
OUT=${OUT:-multirun/text_cold_start}
SEEDS=${SEEDS:-1,2,3}
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"
export WANDB_MODE=${WANDB_MODE:-offline} OMP_NUM_THREADS=1
SC="scenario=[news_nemig,news_nemig_de]"
COMMON=(trainer.max_epochs=3 data.batch_size=2048 num_threads=1)
fields() { echo "scenarios.news_nemig.source.item_fields=$1" "scenarios.news_nemig_de.source.item_fields=$1"; }
# representation name, item fields, item id on/off, models
run() {
  # shellcheck disable=SC2046
  nice -n 5 unirec-train -m "$SC" $(fields "$2") "backbone.item_id_embedding=$3" "seed=$SEEDS" "model=$4" \
    "experiment_name=text_cold_start_$1" "hydra.sweep.dir=$OUT/$1" "${COMMON[@]}" "${EXTRA_ARGS[@]}" > "$OUT/$1.log" 2>&1
}
mkdir -p "$OUT"
# bundles once per field set; the text vectors are encoded once (memoised under .cache/text_embeddings)
for f in '[]' '[title,abstract]' '[text_vec]'; do
  # shellcheck disable=SC2046
  unirec-prepare "$SC" $(fields "$f") > /dev/null
done
# two jobs at a time, one thread each; unified (one shared text tower for EN + DE) and per-scenario
run id '[]' true unified,per_scenario & a=$!
run tokens '[title,abstract]' false unified,per_scenario & b=$!
wait $a; wait $b
run text '[text_vec]' false unified,per_scenario & a=$!
run text_id '[text_vec]' true unified,per_scenario & b=$!
wait $a; wait $b
# the content-based news baseline (NRMS user encoder over the text vectors), per scenario
run nrms '[text_vec]' false nrms
python -m unirec_lab.results.cold_start "$OUT" --out "$HERE"
if [ "${CHECK:-1}" != 0 ]; then python scripts/check_expected.py "$HERE"; fi
