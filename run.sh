#!/usr/bin/env bash
# FLOP step 2: prune a factorized model (from factorize.sh) on a GLUE task. Each run goes to a
# timestamped folder in $OUTPUT_DIR/<checkpoint name>; watch expected_sparsity reach the target
# in TensorBoard, then give the run folder's best/ (or the run folder) to remove_mask.sh.
# Every setting below can be overridden from the environment, e.g.
#   CHECKPOINT=models/minilm_mrpc_f TASK_NAME=MRPC target_sparsity=0.5 bash run.sh
# Extra arguments are passed on: --resume, --teacher_checkpoint=<fine-tuned model>, ...
set -euo pipefail
cd "$(dirname "$0")"

BERT_DIR=${BERT_DIR:-$(pwd)}
OUTPUT_DIR=${OUTPUT_DIR:-$HOME/${TASK_NAME:-SST-2}_Pruning}
CHECKPOINT=${CHECKPOINT:-uncased_L-12_H-768_A-12_f}   # factorized model folder
case "$CHECKPOINT" in /*) MODEL_DIR=$CHECKPOINT ;; *) MODEL_DIR=$BERT_DIR/$CHECKPOINT ;; esac
DATA_DIR=${DATA_DIR:-$BERT_DIR/datasets}

task_name=${TASK_NAME:-SST-2}
batch_size=${batch_size:-32}
max_seq_length=${max_seq_length:-128}
fine_tune_epoch=${fine_tune_epoch:-50.0}
learning_rate=${learning_rate:-0}
learning_rate_warmup=${learning_rate_warmup:-200}
# Not the seed's 10 and 5: with Adam every step moves a parameter by about its learning rate,
# and log_alpha lives on a scale of a few units.
lambda_lr=${lambda_lr:-0.01}
alpha_lr=${alpha_lr:-0.05}
target_sparsity=${target_sparsity:-0.95}
target_sparsity_warmup=${target_sparsity_warmup:-4000}
hidden_dropout_prob=${hidden_dropout_prob:-0.1}
attention_probs_dropout_prob=${attention_probs_dropout_prob:-0.1}
regularization_scale=${regularization_scale:-0}
save_checkpoints_steps=${save_checkpoints_steps:-1000}

exec "${PYTHON:-.venv/bin/python}" -m flop.run_classifier \
  --task_name="$task_name" \
  --do_train=true \
  --do_eval=true \
  --data_dir="$DATA_DIR/$task_name/" \
  --vocab_file="$MODEL_DIR/vocab.txt" \
  --bert_config_file="$MODEL_DIR/bert_config.json" \
  --init_checkpoint="$MODEL_DIR" \
  --max_seq_length="$max_seq_length" \
  --train_batch_size="$batch_size" \
  --learning_rate="$learning_rate" \
  --num_train_epochs="$fine_tune_epoch" \
  --learning_rate_warmup="$learning_rate_warmup" \
  --lambda_learning_rate="$lambda_lr" \
  --alpha_learning_rate="$alpha_lr" \
  --target_sparsity="$target_sparsity" \
  --hidden_dropout_prob="$hidden_dropout_prob" \
  --attention_probs_dropout_prob="$attention_probs_dropout_prob" \
  --target_sparsity_warmup="$target_sparsity_warmup" \
  --regularization_scale="$regularization_scale" \
  --save_checkpoints_steps="$save_checkpoints_steps" \
  --output_dir="$OUTPUT_DIR/$(basename "$MODEL_DIR")" \
  "$@"
