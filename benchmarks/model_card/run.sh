#!/usr/bin/env bash
# Reproduces every measured number of docs/model-card.md. Run from the repository root, with
# the shared data folder beside the checkout (SHARED=../shared by default).
#   bash benchmarks/model_card/run.sh
set -euo pipefail
SHARED=${SHARED:-../shared}
OUT=${OUT:-runs/model-card}
DEMOE=${DEMOE:-default}                               # the bundled weights
BASELINE=${BASELINE:-runs/default-baseline/last}      # same-budget dense baseline
STAGE1=${STAGE1:-runs/default-stage1/last}            # stage-1 baseline (before stage 2)

# Held-out synthetic validation: Kodak24 + McMaster (never trained on), 256x256 crops, all types.
for collection in Kodak24 McMaster; do
  demoe data synth "$SHARED/data/sharp/$collection" "$OUT/synth-val-$collection" \
    --per-image 1 --seed 2026 --crop 256 --split test
done
VAL="$OUT/synth-val-Kodak24/manifest.jsonl $OUT/synth-val-McMaster/manifest.jsonl"
demoe eval --weights "$DEMOE" --manifest $VAL --group-by task --top-k 1 2 5 --manual \
  --input-metrics --name DeMoE --out "$OUT/synth-demoe" --quiet
# The comparison networks, where they exist (the 2026-11 weights had both; a continuation from
# the shipped weights has no same-budget NAFNet yet): summarize.py leaves out absent rows.
if [ -d "$BASELINE" ]; then
  demoe eval --weights "$BASELINE" --manifest $VAL --group-by task --name "NAFNet (same budget)" \
    --out "$OUT/synth-baseline" --quiet
fi
if [ -d "$STAGE1" ]; then
  demoe eval --weights "$STAGE1" --manifest $VAL --group-by task --name "NAFNet (stage 1)" \
    --out "$OUT/synth-stage1" --quiet
fi

# Real blur from the benchmarks (test only): full-reference on the pairs, NIQE and router
# verdicts on the blurry-only images.
python benchmarks/model_card/real_manifest.py "$SHARED/data/real" "$OUT/real/manifest.jsonl"
demoe eval --weights "$DEMOE" --manifest "$OUT/real/manifest.jsonl" --top-k 1 --manual \
  --input-metrics --name DeMoE --out "$OUT/real-demoe" --quiet

python benchmarks/model_card/summarize.py "$OUT"
