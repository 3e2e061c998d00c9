#!/usr/bin/env bash
# Fine-tune every GLUE task at four learning rates, then print the best result per task.
#   BERT_DIR=uncased_L-12_H-768_A-12 GLUE_DIR=datasets bash run_all.sh
# Overridable: BERT_DIR GLUE_DIR OUTPUT_DIR TASKS LRS EPOCHS BATCH_SIZE MAX_SEQ_LENGTH
#              MAX_TRAIN_EXAMPLES (0 = all) DO_LOWER_CASE PYTHON
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-.venv/bin/python}
BERT_DIR=${BERT_DIR:-models/all-MiniLM-L6-v2}
GLUE_DIR=${GLUE_DIR:-datasets}
OUTPUT_DIR=${OUTPUT_DIR:-fine_tune_outputs}
TASKS=${TASKS:-"CoLA SST-2 MRPC STS-B QQP MNLI QNLI RTE WNLI"}
LRS=${LRS:-"5e-5 4e-5 3e-5 2e-5"}
EPOCHS=${EPOCHS:-3}
BATCH_SIZE=${BATCH_SIZE:-32}
MAX_SEQ_LENGTH=${MAX_SEQ_LENGTH:-128}
MAX_TRAIN_EXAMPLES=${MAX_TRAIN_EXAMPLES:-0}
DO_LOWER_CASE=${DO_LOWER_CASE:-true}

if [ ! -f "$BERT_DIR/bert_config.json" ]; then
  if [ "$BERT_DIR" = models/all-MiniLM-L6-v2 ]; then
    "$PYTHON" -m bert.convert_hf --from_pip_package --output_dir "$BERT_DIR"
  else
    echo "run_all.sh: $BERT_DIR/bert_config.json not found (BERT_DIR must be a Google-format model folder)" >&2
    exit 1
  fi
fi

for task in $TASKS; do
  if [ ! -f "$GLUE_DIR/$task/train.tsv" ]; then
    echo "== $task: skipped, no $GLUE_DIR/$task/train.tsv (see datasets/download_glue.py)"
    continue
  fi
  for lr in $LRS; do
    echo "== $task lr=$lr"
    "$PYTHON" -m bert.run_classifier \
      --task_name="$task" --do_train=true --do_eval=true \
      --data_dir="$GLUE_DIR/$task" \
      --vocab_file="$BERT_DIR/vocab.txt" \
      --bert_config_file="$BERT_DIR/bert_config.json" \
      --init_checkpoint="$BERT_DIR" \
      --do_lower_case="$DO_LOWER_CASE" \
      --max_seq_length="$MAX_SEQ_LENGTH" \
      --train_batch_size="$BATCH_SIZE" --eval_batch_size=32 \
      --learning_rate="$lr" --num_train_epochs="$EPOCHS" \
      --max_train_examples="$MAX_TRAIN_EXAMPLES" \
      --output_dir="$OUTPUT_DIR/$task/lr_$lr"
  done
done

"$PYTHON" -m bert.results_table --output_dir "$OUTPUT_DIR" --write "$OUTPUT_DIR/results.md"
