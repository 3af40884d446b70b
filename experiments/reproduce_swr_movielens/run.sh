#!/usr/bin/env bash
# Reproduce Scenario-Wise Rec's MovieLens table (KDD'24 draft, Table 7): every model x 3 seeds on the three age
# domains of ML-1M, then table.md / table.csv (ours vs published, mean ± std over seeds).
#
#   bash experiments/reproduce_swr_movielens/run.sh                     # every model that exists, seeds 1 2 3
#   MODELS="sharedbottom mmoe" SEEDS="1 2 3 4 5" bash experiments/reproduce_swr_movielens/run.sh
#   RUNS=/tmp/swr OUT=/tmp/swr EXTRA="trainer.max_epochs=1" MODELS=sharedbottom SEEDS=1 bash .../run.sh  # smoke
#
# JOBS: runs at once (default 2). MODELS: SWR's 12 by name (sharedbottom mmoe ple star = our zoo on the fields backbone; sarnet m2m adasparse
# adaptdhm epnet ppnet hamur m3oe = the heads of the same names, if conf/head/<name>.yaml exists) and our
# unified variants (saf: scenario as a feature, separate: one model per domain). Default: every SWR model whose
# head config exists. Jobs run two at a time, one CPU thread each (on 2 cores faster and steadier than one job
# on two threads); a run whose result.json exists is skipped (resume after an interruption).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
HERE=experiments/reproduce_swr_movielens
RUNS=${RUNS:-outputs/reproduce_swr_movielens}
OUT=${OUT:-$HERE}
SEEDS=${SEEDS:-"1 2 3"}
EXTRA=${EXTRA:-}
ALL="sharedbottom mmoe ple star sarnet m2m adasparse adaptdhm epnet ppnet hamur m3oe"
if [[ -z "${MODELS:-}" ]]; then
  MODELS=""
  for m in $ALL; do
    head=$m; case $m in sharedbottom) head=mlp;; esac
    if [[ -f conf/head/$head.yaml ]]; then MODELS="$MODELS $m"; else echo "skip $m: no conf/head/$head.yaml"; fi
  done
fi
export WANDB_MODE=${WANDB_MODE:-offline} OMP_NUM_THREADS=1
# The 90-minute bound: 36 runs (12 models x 3 seeds) in two slots are 18 rounds; each run trains at most
# 4.5 minutes (then its best epoch so far is tested, as after early stopping) plus ~30 s to load and test, so the
# whole script ends within 18 x 5 = 90 minutes however busy the machine. Unloaded, runs stop by patience first.
GUARD=${GUARD-"+trainer.max_time=00:00:04:30"}  # GUARD="" turns it off

# SWR's model sizes (run_movielens_rank_multi_domain.py). SharedBottom keeps the fields backbone's bottom MLP
# [128]; every other SWR model reads the concatenated field embeddings directly (backbone.trunk_dims=[]). SWR's
# MLPs (experts, towers, bottom) are Linear -> BatchNorm -> ReLU: head.batch_norm=true.
overrides() {
  case $1 in
    sharedbottom) echo "head=mlp head.hidden_dims=[8] head.batch_norm=true";;
    mmoe) echo "head=mmoe head.num_experts=3 head.expert_dims=[16] head.tower_dims=[8] head.batch_norm=true
                backbone.trunk_dims=[]";;
    ple) echo "head=ple head.num_levels=1 head.specific_experts=2 head.shared_experts=1 head.expert_dims=[16]
               head.tower_dims=[8] head.batch_norm=true backbone.trunk_dims=[]";;
    star) echo "head=star head.hidden_dims=[128,64,32] head.aux_dims=[32] head.extra_inputs=[]
                backbone.trunk_dims=[]";;
    saf) echo "model=scenario_as_feature head=mlp head.hidden_dims=[8] head.batch_norm=true";;
    separate) echo "model=per_scenario head=mlp head.hidden_dims=[8] head.batch_norm=true pooled_metrics=false
                    selection.monitor=val/mean/auc";;
    # AdaptDHM stays on its first-epoch plateau for ~10 epochs and then improves slowly (SWR's own code too, on
    # this split); StepLR would shrink lr to 4e-5 by epoch 40, so it trains at SWR's actual constant lr 1e-3
    # (README, difference 9).
    adaptdhm) echo "head=adaptdhm backbone.trunk_dims=[] scheduler=null";;
    *) echo "head=$1 backbone.trunk_dims=[]";;
  esac
}

run_one() {
  local m=$1 seed=$2 dir="$RUNS/$1/seed$2"
  if [[ -f "$dir/result.json" ]]; then echo "skip $m seed $seed (done: $dir)"; return 0; fi
  mkdir -p "$dir"
  echo "$(date +%T) start $m seed $seed"
  # shellcheck disable=SC2046
  "$PY" -m unirec_lab.train experiment=swr_movielens model.name="$m" seed="$seed" $(overrides "$m") $GUARD $EXTRA \
    hydra.run.dir="$dir" > "$dir/stdout.log" 2>&1 || { echo "FAILED $m seed $seed: see $dir/stdout.log"; return 1; }
  echo "$(date +%T) done  $m seed $seed: $(grep -m1 '^wall' "$dir/stdout.log" || true)"
}
export -f run_one overrides
export PY RUNS EXTRA GUARD

start=$(date +%s)
"$PY" -m unirec_lab.cli.prepare scenario=movielens_swr > /dev/null  # the three bundles once, before the jobs
jobs=()
for s in $SEEDS; do for m in $MODELS; do jobs+=("$m $s"); done; done
printf '%s\n' "${jobs[@]}" | xargs -P "${JOBS:-2}" -L 1 bash -c 'run_one "$0" "$1"' || { echo "some runs failed"; exit 1; }
echo "all runs finished in $(( ($(date +%s) - start) / 60 )) min"
"$PY" "$HERE/table.py" "$RUNS" --out "$OUT"
