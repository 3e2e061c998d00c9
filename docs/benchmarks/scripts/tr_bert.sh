#!/bin/bash
# TR-BERT on MRPC, STS-B, SST-2: guide + teacher logits, policy-only RL for three alphas, joint
# training at alpha 0.3. Subset: the first 2000 training examples; full dev sets.
cd "$(dirname "$0")/../../.."  # the repository root
PY=".venv/bin/python"
for T in MRPC STS-B SST-2; do
  FT=runs/compress_$T/1_fine_tune/model; OUT=runs/tr_bert_$T
  C="--task_name=$T --data_dir=../shared/glue/$T --max_seq_length=128 --max_train_examples=2000 --train_batch_size=32 --eval_batch_size=32"
  nice -n 5 $PY -m tr_bert.run_tr_bert $C --init_checkpoint=$FT --output_dir=$OUT --do_eval_grad --do_eval_logits
  for A in 0.1 0.3 1.0; do
    nice -n 5 $PY -m tr_bert.run_tr_bert $C --init_checkpoint=$FT --output_dir=$OUT/alpha_$A \
      --guide_dir=$OUT/eval_grad --do_train --train_rl --alpha=$A --num_train_epochs=3
  done
  nice -n 5 $PY -m tr_bert.run_tr_bert $C --init_checkpoint=$OUT/alpha_0.3/train_rl/model --output_dir=$OUT/alpha_0.3 \
    --logits_dir=$OUT/eval_logits --do_train --train_both --train_teacher --alpha=0.3 --learning_rate=2e-5 --num_train_epochs=2
done
