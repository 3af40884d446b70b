#!/usr/bin/env bash
# The main table: regenerates table.md / table.tex / table.csv / plot.png in this folder from scratch.
#   bash experiments/main_unified_vs_single/run.sh            # 5 seeds (the table's protocol)
#   SEEDS=1,2 bash experiments/main_unified_vs_single/run.sh  # a quicker look (do not check that in)
# Smoke run (what the README test does): EXTRA is appended to every training job, HERE receives the tables,
# CHECK=0 skips the expected.yaml check:
#   EXTRA="debug=fast" SEEDS=1 OUT=/tmp/mt HERE=/tmp/mt/tables CHECK=0 bash experiments/main_unified_vs_single/run.sh
# ROWS picks row groups (default: all): models (unified, per_scenario, scenario_as_feature), star, one_ckpt,
# strongest, unified_seq; e.g. ROWS="models strongest unified_seq" (the tables then lack the other rows).
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=${HERE:-experiments/main_unified_vs_single}
OUT=${OUT:-multirun/main_unified_vs_single}
SEEDS=${SEEDS:-1,2,3,4,5}
ROWS=${ROWS:-models star one_ckpt strongest unified_seq}
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"
export WANDB_MODE=${WANDB_MODE:-offline}
want() { [[ " $ROWS " == *" $1 "* ]]; }
unirec-prepare scenario=real
# unified (Shared-Bottom MLP towers), the per-scenario baseline, and the scenario-as-feature single model
if want models; then
  unirec-train -m experiment=main_real "seed=$SEEDS" model=unified,per_scenario,scenario_as_feature \
    "hydra.sweep.dir=$OUT/models" "${EXTRA_ARGS[@]}"
fi
# the multi-scenario head from the zoo (STAR) on the same backbone
if want star; then
  unirec-train -m experiment=main_real "seed=$SEEDS" model=unified head=star model.name=unified_star \
    "hydra.sweep.dir=$OUT/star" "${EXTRA_ARGS[@]}"
fi
# ablation: the unified model with one checkpoint for all scenarios (best validation mean AUC)
if want one_ckpt; then
  unirec-train -m experiment=main_real "seed=$SEEDS" model=unified selection.scope=global \
    model.name=unified_one_ckpt "hydra.sweep.dir=$OUT/one_ckpt" "${EXTRA_ARGS[@]}"
fi
# the strongest per-scenario model of each field, one row name (`strongest`): SASRec on Beauty, DKT on
# ASSISTments, a feedback-aware SASRec-style model on Ciao, DIN on MIND (conf/experiment/strongest_<scenario>.yaml)
if want strongest; then
  for s in ecommerce education social news; do
    unirec-train -m "experiment=strongest_$s" "seed=$SEEDS" "hydra.sweep.dir=$OUT/strongest_$s" "${EXTRA_ARGS[@]}"
  done
fi
# the unified sequence model: one feedback-aware SASRec backbone over all four, per-scenario objectives
if want unified_seq; then
  unirec-train -m experiment=main_unified_seq "seed=$SEEDS" "hydra.sweep.dir=$OUT/unified_seq" "${EXTRA_ARGS[@]}"
fi
# each model's own training recipe (history length, batch, epochs, validation subset) does not split the table:
# the protocol (bundle, split, test rows, candidates, metrics) is the same for every row
RECIPE=(--ignore-key data.history_len --ignore-key data.batch_size --ignore-key data.val_budget
        --ignore-key trainer.max_epochs --ignore-key callbacks.early_stopping.patience)
unirec-report "$OUT" --baseline per_scenario,strongest --metrics auc,logloss,gauc,ndcg@10 "${RECIPE[@]}" \
  --out "$HERE" --title "Unified vs per-scenario models on four real scenarios"
# where the differences come from: cold / warm users and items of each scenario's test set
unirec-report "$OUT" --slices --baseline per_scenario,strongest --metrics auc,logloss "${RECIPE[@]}" \
  --out "$HERE" --title "Cold-start slices: unified vs per-scenario models"
if [ "${CHECK:-1}" != 0 ]; then python scripts/check_expected.py "$HERE"; fi
