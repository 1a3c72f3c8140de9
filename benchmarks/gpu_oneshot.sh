#!/usr/bin/env bash
# The one-shot H200 run of docs/training.md ("One-shot GPU run"), as the device tool runs it:
# from the repository root, with the pack folder .gpu_pack carried; extra arguments go to
# `gpu_oneshot.py run`. Its output and this log land in $OUT, which the tool brings back.
set -euo pipefail
: "${OUT:?OUT is not set: run this through the device tool, or export OUT=a-folder}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 benchmarks/gpu_oneshot.py run --pack .gpu_pack --out "$OUT" "$@" 2>&1 | tee "$OUT/run.log"
