#!/usr/bin/env bash
# FLOP step 3: fold the trained gates into the factors and write the compact model + info.txt
# (parameter counts and compact-vs-dense latency at batch 1 and 32, seq 128).
# Environment overrides: CHECKPOINT (a pruning run folder, its best/ folder or a checkpoint
# prefix), OUTPUT_FOLDER_DIR, LATENCY_ITERATIONS (0 skips the timing), PYTHON.
# Extra arguments are passed on, e.g. --bert_config_file=... --latency_batch_sizes=1,8
set -euo pipefail
cd "$(dirname "$0")"

: "${CHECKPOINT:?set CHECKPOINT to the pruning run folder (or its best/ folder)}"
OUTPUT_FOLDER_DIR=${OUTPUT_FOLDER_DIR:-${CHECKPOINT%/}_compact}
LATENCY_ITERATIONS=${LATENCY_ITERATIONS:-20}

exec "${PYTHON:-.venv/bin/python}" -m flop.remove_mask --checkpoint="$CHECKPOINT" \
  --output_folder_dir="$OUTPUT_FOLDER_DIR" --latency_iterations="$LATENCY_ITERATIONS" "$@"
