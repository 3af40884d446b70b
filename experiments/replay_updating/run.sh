#!/usr/bin/env bash
# Replay: does updating on fresh feedback help? Static vs updated (warm-start fine-tune after every window) vs
# full retrain, per time window, on two real scenarios with timestamps. Regenerates social/ and news/ here
# (replay.md / .csv / .tex / .json and the AUC plot). ~5 minutes per scenario on 2 loaded CPU cores.
#   bash experiments/replay_updating/run.sh
#   OUT=/tmp/replay HERE=/tmp/replay/tables bash experiments/replay_updating/run.sh   # elsewhere
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=${HERE:-experiments/replay_updating}
OUT=${OUT:-outputs/replay_updating}
export WANDB_MODE=${WANDB_MODE:-disabled}
rm -rf "$OUT/social" "$OUT/news"
# Ciao, cut by time (the latest 10% of all ratings are the test period), 4 equal-row windows
unirec-replay --out "$OUT/social" --windows 4 --epochs 2 --batch-size 256 --retrain --seed 0 -- \
  scenario=social +scenarios.social.source.split=temporal trainer.max_epochs=5 seed=1 num_threads=1 logger=none
# MIND: the last 3 impression days are the test period (11-12 .. 11-14), one window per day
unirec-replay --out "$OUT/news" --window-seconds 86400 --epochs 2 --batch-size 256 --retrain --seed 0 -- \
  scenario=news scenarios.news.source.test_days=3 trainer.max_epochs=10 seed=1 num_threads=1 logger=none
for s in social news; do
  mkdir -p "$HERE/$s"
  cp "$OUT/$s"/replay.md "$OUT/$s"/replay.csv "$OUT/$s"/replay.tex "$OUT/$s"/replay.json "$HERE/$s/"
  cp "$OUT/$s/replay_${s}_auc.png" "$HERE/$s/replay_auc.png"
done
