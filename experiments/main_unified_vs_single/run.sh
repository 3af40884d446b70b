#!/usr/bin/env bash
# The main table: regenerates table.md / table.tex / table.csv / plot.png in this folder from scratch.
#   bash experiments/main_unified_vs_single/run.sh            # 5 seeds (the table's protocol)
#   SEEDS=1,2 bash experiments/main_unified_vs_single/run.sh  # a quicker look (do not check that in)
# Smoke run (what the README test does): EXTRA is appended to every training job, HERE receives the tables,
# CHECK=0 skips the expected.yaml check:
#   EXTRA="debug=fast" SEEDS=1 OUT=/tmp/mt HERE=/tmp/mt/tables CHECK=0 bash experiments/main_unified_vs_single/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=${HERE:-experiments/main_unified_vs_single}
OUT=${OUT:-multirun/main_unified_vs_single}
SEEDS=${SEEDS:-1,2,3,4,5}
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"
export WANDB_MODE=${WANDB_MODE:-offline}
unirec-prepare scenario=real
# unified (Shared-Bottom MLP towers), the per-scenario baseline, and the scenario-as-feature single model
unirec-train -m experiment=main_real "seed=$SEEDS" model=unified,per_scenario,scenario_as_feature \
  "hydra.sweep.dir=$OUT/models" "${EXTRA_ARGS[@]}"
# the multi-scenario head from the zoo (STAR) on the same backbone
unirec-train -m experiment=main_real "seed=$SEEDS" model=unified head=star model.name=unified_star \
  "hydra.sweep.dir=$OUT/star" "${EXTRA_ARGS[@]}"
# ablation: the unified model with one checkpoint for all scenarios (best validation mean AUC)
unirec-train -m experiment=main_real "seed=$SEEDS" model=unified selection.scope=global \
  model.name=unified_one_ckpt "hydra.sweep.dir=$OUT/one_ckpt" "${EXTRA_ARGS[@]}"
unirec-report "$OUT" --baseline per_scenario --metrics auc,logloss,gauc,ndcg@10 \
  --out "$HERE" --title "Unified vs per-scenario models on four real scenarios"
# where the differences come from: cold / warm users and items of each scenario's test set
unirec-report "$OUT" --slices --baseline per_scenario --metrics auc,logloss \
  --out "$HERE" --title "Cold-start slices: unified vs per-scenario models"
if [ "${CHECK:-1}" != 0 ]; then python scripts/check_expected.py "$HERE"; fi
