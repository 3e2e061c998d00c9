#!/bin/bash
# Second TR-BERT sweep: a weaker guide (10% of steps) so alpha decides how much is kept.
cd "$(dirname "$0")/../../.."  # the repository root
PY=".venv/bin/python"
for T in MRPC STS-B SST-2; do
  FT=runs/compress_$T/1_fine_tune/model; OUT=runs/tr_bert_$T
  C="--task_name=$T --data_dir=../shared/glue/$T --max_seq_length=128 --max_train_examples=2000 --train_batch_size=32 --eval_batch_size=32"
  for A in 1.0 2.0 4.0; do
    nice -n 5 $PY -m tr_bert.run_tr_bert $C --init_checkpoint=$FT --output_dir=$OUT/g0.1_alpha_$A \
      --guide_dir=$OUT/eval_grad --do_train --train_rl --alpha=$A --guide_rate=0.1 --num_train_epochs=3
  done
done
