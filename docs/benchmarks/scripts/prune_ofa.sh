#!/bin/bash
# Prune OFA downstream on the three tasks at 80% and 90%: prune+distil (3 epochs), QAT (1 epoch),
# then the learned-INT8 export with the dev metric. Run from the snapshot /tmp/snap.
set -u
cd /tmp/snap  # a snapshot worktree (git worktree add --detach /tmp/snap <commit>)
PY=/work/main/.venv/bin/python
RUNS=/work/main/runs
OUT=$RUNS/ofa
for spec in "STS-B 64 0 0.8" "STS-B 64 0 0.9" "MRPC 128 0 0.8" "MRPC 128 0 0.9" "SST-2 64 2000 0.8" "SST-2 64 2000 0.9"; do
  set -- $spec; task=$1; seq=$2; max=$3; s=$4
  case $task in SST-2) src=$RUNS/budget_SST-2_distill/1_fine_tune/model;; *) src=$RUNS/budget_$task/1_fine_tune/model;; esac
  dir=$OUT/${task}_$s
  echo "== $(date +%T) $task sparsity $s"
  $PY -m prune_ofa.run_classifier --task_name=$task --data_dir=/work/shared/glue/$task \
    --init_checkpoint=$src --teacher_model_dir=$src --output_dir=$dir --do_train --do_eval \
    --max_seq_length=$seq --max_train_examples=$max --train_batch_size=32 --learning_rate=5e-5 \
    --num_train_epochs=3 --final_sparsity=$s --pruning_frequency=20 --hidden_weight=1.0 \
    --qat_epochs=1 --save_checkpoints_steps=200 --log_every_n_steps=50 > $dir.log 2>&1
  echo "   exit $? $(grep -h 'sparse fine-tuning\|quantization-aware' $dir.log | tr '\n' ' ')"
  $PY -m deploy.export --model_dir=$dir/qat/model --output_dir=$dir/export --task_name=$task \
    --data_dir=/work/shared/glue/$task --max_seq_length=$seq > $dir.export.log 2>&1
  echo "   export exit $? $(tail -4 $dir.export.log | tr '\n' ' ')"
done
echo "== $(date +%T) done"
