#!/bin/bash
# Prune OFA downstream, the longer recipe: lr 1e-4, pruning over the first 40% of the steps,
# prune+distil then QAT (1 epoch, lr 1e-5), then the learned-INT8 export with the dev metric.
set -u
cd /tmp/snap2  # a snapshot worktree (git worktree add --detach /tmp/snap2 <commit>)
PY=/work/main/.venv/bin/python
RUNS=/work/main/runs
OUT=$RUNS/ofa
for spec in "SST-2 64 2000 0.8 8" "SST-2 64 2000 0.9 8" "STS-B 64 0 0.8 6"; do
  set -- $spec; task=$1; seq=$2; max=$3; s=$4; epochs=$5
  case $task in SST-2) src=$RUNS/budget_SST-2_distill/1_fine_tune/model;; *) src=$RUNS/budget_$task/1_fine_tune/model;; esac
  dir=$OUT/long_${task}_$s
  echo "== $(date +%T) $task sparsity $s, $epochs epochs"
  $PY -m prune_ofa.run_classifier --task_name=$task --data_dir=/work/shared/glue/$task \
    --init_checkpoint=$src --teacher_model_dir=$src --output_dir=$dir --do_train --do_eval \
    --max_seq_length=$seq --max_train_examples=$max --train_batch_size=32 --learning_rate=1e-4 \
    --num_train_epochs=$epochs --final_sparsity=$s --pruning_frequency=10 \
    --pruning_end=$(( ( (max > 0 ? max : 5749) / 32 * epochs * 4 ) / 10 )) --hidden_weight=1.0 \
    --qat_epochs=1 --save_checkpoints_steps=200 --log_every_n_steps=50 > $dir.log 2>&1
  echo "   exit $? $(grep -h 'sparse fine-tuning\|quantization-aware' $dir.log | tr '\n' ' ')"
  $PY -m deploy.export --model_dir=$dir/qat/model --output_dir=$dir/export --task_name=$task \
    --data_dir=/work/shared/glue/$task --max_seq_length=$seq > $dir.export.log 2>&1
  echo "   export exit $? $(tail -4 $dir.export.log | tr '\n' ' ')"
done
echo "== $(date +%T) done"
