#!/usr/bin/env bash
# Reproduce the published SASRec rows on Amazon Beauty and Toys_and_Games under the S3-Rec protocol (leave-one-out,
# 1 positive vs 99 sampled negatives) through the main loop: experiment=reproduce_s3rec_sasrec (model=sasrec),
# 2 datasets x 3 seeds, then the table (unirec-report) and the check against expected.yaml.
#
#   bash experiments/reproduce_s3rec_sasrec/run.sh          # ~35 min on 2 idle CPU cores, ~80 on a busy machine
#   SEEDS="1" RUNS=/tmp/s3 HERE=/tmp/s3/table CHECK=0 EXTRA="trainer.max_epochs=1" bash .../run.sh   # smoke
#
# The 6 jobs go through a queue two at a time, each on one CPU thread (on 2 cores that is faster and far less
# sensitive to other processes than one job on two threads). A run whose result.json exists is skipped; a run
# that was stopped (SIGTERM / Ctrl-C: its last finished epoch is in checkpoints/latest.ckpt) is continued exactly
# (resume=true); delete $RUNS to start over. MAX_TIME caps one run's training time, resumed parts included
# (Lightning's trainer.max_time; the best epoch so far is then tested), so the script stays bounded.
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=${HERE:-experiments/reproduce_s3rec_sasrec}
RUNS=${RUNS:-${OUT:-outputs/reproduce_s3rec_sasrec}}   # OUT: the name the other experiment scripts use
SEEDS=${SEEDS:-"1 2 3"}
EXTRA=${EXTRA:-}
MAX_TIME=${MAX_TIME:-"00:00:24:00"}
TRAIN=${TRAIN:-unirec-train}
export WANDB_MODE=${WANDB_MODE:-offline} OMP_NUM_THREADS=1

run_one() {
  local scenario=$1 seed=$2 dir="$RUNS/$1/seed$2"
  if [[ -f "$dir/result.json" ]]; then echo "skip $scenario seed $seed (done: $dir)"; return 0; fi
  local resume=""
  if [[ -n "$(find "$dir" -name latest.ckpt 2>/dev/null)" ]]; then resume="resume=true"; fi
  mkdir -p "$dir"
  echo "$(date +%T) start $scenario seed $seed ${resume:+(continuing its last epoch)}"
  # shellcheck disable=SC2086
  $TRAIN experiment=reproduce_s3rec_sasrec scenario="$scenario" seed="$seed" num_threads=1 logger=csv \
    +trainer.max_time="$MAX_TIME" $EXTRA $resume hydra.run.dir="$dir" >> "$dir.log" 2>&1 \
    || { echo "FAILED $scenario seed $seed: see $dir.log"; return 1; }
  echo "$(date +%T) done  $scenario seed $seed: $(grep '^wall' "$dir.log")"
}
export -f run_one
export RUNS EXTRA MAX_TIME TRAIN

mkdir -p "$RUNS"
start=$(date +%s)
jobs=()
for s in $SEEDS; do jobs+=("ecommerce $s" "ecommerce_toys $s"); done
printf '%s\n' "${jobs[@]}" | xargs -P 2 -L 1 bash -c 'run_one "$0" "$1"' || { echo "some runs failed"; exit 1; }
echo "all runs finished in $(( ($(date +%s) - start) / 60 )) min"

unirec-report "$RUNS" --baseline sasrec --metrics hr@1,hr@5,ndcg@5,hr@10,ndcg@10,mrr --format md,csv --out "$HERE" \
  --published experiments/reproduce_s3rec_sasrec/published.yaml \
  --title "SASRec on Amazon Beauty / Toys_and_Games, S3-Rec protocol (leave-one-out, 1 vs 99): published vs ours"
if [ "${CHECK:-1}" != 0 ]; then python scripts/check_expected.py "$HERE"; fi
