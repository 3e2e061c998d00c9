#!/bin/bash
# Prune OFA's pre-training stage on GLUE train sentences (a short check of the entry point:
# 100 steps). Needs runs/ofa/pretrain/glue_text.txt from datasets/glue_text.py and /tmp/minilm
# from bert.convert_hf.
set -u
cd /tmp/snap2  # a snapshot worktree (git worktree add --detach /tmp/snap2 <commit>)
PY=/work/main/.venv/bin/python
P=/work/main/runs/ofa/pretrain
echo "== $(date +%T) pretraining data"
$PY -m bert.pretraining_data --input_file=$P/glue_text.txt --vocab_file=/tmp/minilm/vocab.txt \
  --output_file=$P/glue.tf_record --max_seq_length=64 --max_predictions_per_seq=10 \
  --dupe_factor=1 > $P/data.log 2>&1
echo "   exit $? $(tail -1 $P/data.log)"
echo "== $(date +%T) pretraining at 90%"
$PY -m prune_ofa.pretrain --input_file=$P/glue.tf_record --init_checkpoint=/tmp/minilm \
  --teacher_model_dir=/tmp/minilm --output_dir=$P/run90 --max_seq_length=64 \
  --max_predictions_per_seq=10 --train_batch_size=32 --num_train_steps=100 \
  --learning_rate=1e-4 --final_sparsity=0.9 --pruning_frequency=20 \
  --save_checkpoints_steps=100 --log_every_n_steps=25 > $P/run90.log 2>&1
echo "   exit $? $(grep 'sparse encoder' $P/run90.log)"
echo "== $(date +%T) done"
