#!/usr/bin/env bash
# The main table: regenerates table.md / table.tex / table.csv / plot.png (and the slices) in this folder.
#   bash experiments/main_unified_vs_single/run.sh            # 5 seeds (the table's protocol)
#   SEEDS=1,2 bash experiments/main_unified_vs_single/run.sh  # a quicker look (do not check that in)
# Smoke run (what the README test does): EXTRA is appended to every training job, HERE receives the tables,
# CHECK=0 skips the expected.yaml check:
#   EXTRA="debug=fast" SEEDS=1 OUT=/tmp/mt HERE=/tmp/mt/tables CHECK=0 bash experiments/main_unified_vs_single/run.sh
# ROWS picks row groups (default: all): models (unified, per_scenario, scenario_as_feature), unified_fb, star,
# one_ckpt, strongest, unified_seq; e.g. ROWS="models strongest" (the tables then lack the other rows).
# JOBS: jobs at once (default 2: one per core, one torch thread each; on 2 cores faster than one job on two
# threads). Every job is its own run dir under OUT; a job whose result.json exists is skipped, so an interrupted
# run.sh resumes where it stopped. Jobs start longest first (the sequence models), so the two slots end together.
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=${HERE:-experiments/main_unified_vs_single}
OUT=${OUT:-multirun/main_unified_vs_single}
SEEDS=${SEEDS:-1,2,3,4,5}
ROWS=${ROWS:-models unified_fb star one_ckpt strongest unified_seq}
JOBS=${JOBS:-2}
export WANDB_MODE=${WANDB_MODE:-offline} OMP_NUM_THREADS=1 EXTRA=${EXTRA:-} OUT
want() { [[ " $ROWS " == *" $1 "* ]]; }
read -r -a SEED_LIST <<< "${SEEDS//,/ }"
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: JOBS=$JOBS, expected a positive integer (jobs at once)" >&2; exit 2; }
for s in "${SEED_LIST[@]}"; do
  [[ $s =~ ^[0-9]+$ ]] || { echo "run.sh: SEEDS=$SEEDS, expected integers separated by commas, e.g. 1,2,3" >&2; exit 2; }
done
[[ ${#SEED_LIST[@]} -gt 0 ]] || { echo "run.sh: SEEDS is empty, expected e.g. 1,2,3,4,5" >&2; exit 2; }
for r in $ROWS; do
  case $r in models|unified_fb|star|one_ckpt|strongest|unified_seq) ;;
    *) echo "run.sh: ROWS has '$r', expected some of: models unified_fb star one_ckpt strongest unified_seq" >&2; exit 2;;
  esac
done

# one line per job: <run dir under OUT> <overrides>; longest first (CPU seconds of one seed, README "Cost")
job_list() {
  for s in "${SEED_LIST[@]}"; do
    # the strongest per-scenario model of each field, one row name (`strongest`): SASRec on Beauty, DKT on
    # ASSISTments, a TrustSVD-style model on Ciao, DIN on MIND (conf/experiment/strongest_<scenario>.yaml)
    if want strongest; then echo "strongest/ecommerce/seed$s experiment=strongest_ecommerce seed=$s"; fi
    # the unified sequence model: one feedback-aware SASRec backbone over all four, per-scenario objectives
    if want unified_seq; then echo "unified_seq/seed$s experiment=main_unified_seq seed=$s"; fi
    if want strongest; then echo "strongest/education/seed$s experiment=strongest_education seed=$s"; fi
  done
  for s in "${SEED_LIST[@]}"; do
    # unified (Shared-Bottom MLP towers), the per-scenario baseline, and the scenario-as-feature single model
    if want models; then
      for m in per_scenario unified scenario_as_feature; do echo "models/$m/seed$s experiment=main_real model=$m seed=$s"; done
    fi
    # the unified model with feedback-aware histories (item ⊕ correct / liked on ASSISTments and Ciao)
    if want unified_fb; then echo "unified_fb/seed$s experiment=main_unified_fb seed=$s"; fi
    # the multi-scenario head from the zoo (STAR) on the same backbone
    if want star; then echo "star/seed$s experiment=main_real model=unified head=star model.name=unified_star seed=$s"; fi
    # ablation: the unified model with one checkpoint for all scenarios (best validation mean AUC)
    if want one_ckpt; then
      echo "one_ckpt/seed$s experiment=main_real model=unified selection.scope=global model.name=unified_one_ckpt seed=$s"
    fi
    if want strongest; then
      echo "strongest/news/seed$s experiment=strongest_news seed=$s"
      echo "strongest/social/seed$s experiment=strongest_social seed=$s"
    fi
  done
}

run_job() {  # <run dir under OUT> <overrides...>
  local dir=$OUT/$1; shift
  if [[ -f $dir/result.json ]]; then echo "done already: $dir"; return 0; fi
  local t0=$SECONDS extra
  read -r -a extra <<< "$EXTRA"
  mkdir -p "$dir"
  if unirec-train "$@" num_threads=1 "hydra.run.dir=$dir" "${extra[@]}" > "$dir/train.log" 2>&1; then
    printf '%s\t%s s\n' "${dir#"$OUT"/}" "$((SECONDS - t0))" | tee -a "$OUT/job_times.tsv"
  else
    echo "FAILED ($?): $dir (log: $dir/train.log)"; tail -n 5 "$dir/train.log"; return 1
  fi
}
export -f run_job

unirec-prepare scenario=real
mkdir -p "$OUT"
start=$SECONDS
job_list | xargs -P "$JOBS" -L 1 bash -c 'run_job "$@"' _
echo "training: $((SECONDS - start)) s wall for $(job_list | wc -l) jobs on $JOBS slots"

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
