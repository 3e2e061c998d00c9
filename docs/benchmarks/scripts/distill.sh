#!/bin/bash
# Bort-style search -> extract -> distil on MRPC, STS-B, SST-2 for speed-up budgets 3 and 4.
# Distillation subsets: first 3000 train examples (MRPC, STS-B; seq 128), 6000 (SST-2, seq 64); 3 epochs.
cd "$(dirname "$0")/../../.."  # the repository root
PY=".venv/bin/python"
declare -A CACHE=([MRPC]=runs/distill_latency_2labels.json [SST-2]=runs/distill_latency_2labels.json [STS-B]=runs/distill_latency_1label.json)
declare -A EXAMPLES=([MRPC]=3000 [STS-B]=3000 [SST-2]=6000)
declare -A SEQ=([MRPC]=128 [STS-B]=128 [SST-2]=64)
for T in MRPC STS-B SST-2; do
  FT=runs/compress_$T/1_fine_tune/model; OUT=runs/distill_$T
  nice -n 5 $PY -m distill.search --model_dir $FT --task_name $T --data_dir ../shared/glue/$T --speedup 3,4 \
    --output_dir $OUT/search --latency_cache ${CACHE[$T]}
  for B in x3 x4; do
    nice -n 5 $PY -m distill.extract --model_dir $FT --config $OUT/search/chosen_config_$B.json \
      --output_dir $OUT/student_$B --task_name $T --data_dir ../shared/glue/$T
  done
done
for B in x3 x4; do
  for T in MRPC STS-B SST-2; do
    FT=runs/compress_$T/1_fine_tune/model; OUT=runs/distill_$T
    nice -n 5 $PY -m distill.run_distill --task_name=$T --do_train --do_eval --data_dir=../shared/glue/$T \
      --init_checkpoint=$OUT/student_$B --teacher_model_dir=$FT --output_dir=$OUT/distilled_$B \
      --max_seq_length=${SEQ[$T]} --train_batch_size=32 --eval_batch_size=32 --learning_rate=1e-4 \
      --max_train_examples=${EXAMPLES[$T]} --num_train_epochs=3
  done
done
