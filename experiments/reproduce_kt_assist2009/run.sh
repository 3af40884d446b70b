#!/usr/bin/env bash
# The knowledge-tracing baseline (DKT) on AKT's assist2009_pid fold 1 through the main training loop
# (experiment=reproduce_kt_assist2009), 3 seeds, two jobs at a time on one CPU thread each; then the table.
#
#   bash experiments/reproduce_kt_assist2009/run.sh                 # ~25 min on 2 idle cores, ~45 busy
#   SEEDS="1" RUNS=/tmp/kt HERE=/tmp/kt/table CHECK=0 EXTRA="trainer.max_epochs=1" bash .../run.sh   # smoke
#
# A run whose result.json exists is skipped (resume after an interruption); delete $RUNS to start over.
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=${HERE:-experiments/reproduce_kt_assist2009}
RUNS=${RUNS:-outputs/reproduce_kt_assist2009}
SEEDS=${SEEDS:-"1 2 3"}
EXTRA=${EXTRA:-}
export WANDB_MODE=${WANDB_MODE:-offline} OMP_NUM_THREADS=1

run_one() {
  local seed=$1 dir="$RUNS/seed$1"
  if [[ -f "$dir/result.json" ]]; then echo "skip seed $seed (done: $dir)"; return 0; fi
  echo "$(date +%T) start seed $seed"
  # shellcheck disable=SC2086
  unirec-train experiment=reproduce_kt_assist2009 seed="$seed" num_threads=1 logger=csv $EXTRA \
    hydra.run.dir="$dir" > "$RUNS/seed$seed.log" 2>&1 || { echo "FAILED seed $seed: see $RUNS/seed$seed.log"; return 1; }
  echo "$(date +%T) done  seed $seed: $(grep '^wall' "$RUNS/seed$seed.log")"
}
export -f run_one
export RUNS EXTRA

mkdir -p "$RUNS"
start=$(date +%s)
printf '%s\n' $SEEDS | xargs -P 2 -I{} bash -c 'run_one {}'
echo "all runs: $(( ($(date +%s) - start) / 60 )) min"
unirec-report "$RUNS" --metrics auc,gauc,logloss --format md,csv --out "$HERE" \
  --title "DKT on ASSISTments 2009 (AKT assist2009_pid, fold 1): test AUC over every response of the test students"
if [ "${CHECK:-1}" != 0 ]; then python scripts/check_expected.py "$HERE"; fi
