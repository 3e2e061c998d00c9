#!/usr/bin/env bash
# FLOP step 1: factorize every encoder kernel of a (fine-tuned) BERT into P·Q (reduced SVD).
# Environment overrides: BERT_DIR (folder with bert_config.json + vocab of the dense model),
# CHECKPOINT (its checkpoint prefix or folder, e.g. a fine-tuning output), OUTPUT_DIR (the
# factorized model folder), FINETUNED (1 keeps the classifier head, 0 drops it), PYTHON.
# Extra arguments are passed on, e.g. --vocab_file=...
set -euo pipefail
cd "$(dirname "$0")"

BERT_DIR=${BERT_DIR:-uncased_L-12_H-768_A-12}
CHECKPOINT=${CHECKPOINT:-$BERT_DIR}
OUTPUT_DIR=${OUTPUT_DIR:-${BERT_DIR%/}_f}
FINETUNED=${FINETUNED:-1}

args=(--bert_config_file="$BERT_DIR/bert_config.json" --checkpoint="$CHECKPOINT"
      --output_dir="$OUTPUT_DIR")
if [ "$FINETUNED" = 1 ]; then
  args+=(--finetuned)
fi
exec "${PYTHON:-.venv/bin/python}" -m flop.factorize "${args[@]}" "$@"
