#!/bin/bash
# STS-B's 3x student again: the search on a machine with nothing else running (distill.sh's
# shared the cores with training), then distillation on the whole train set (5749 pairs) for
# 5 epochs instead of the first 3000 for 3. bench_distill_stsb.sh times it.
set -euo pipefail
cd "$(dirname "$0")/../../.."  # the repository root
PY=".venv/bin/python"
T=STS-B; FT=runs/compress_$T/1_fine_tune/model; OUT=runs/distill_full_$T
[ -f models/all-MiniLM-L6-v2/bert_config.json ] || \
  $PY -m bert.convert_hf --from_pip_package --output_dir models/all-MiniLM-L6-v2
$PY -m deploy.compress --task_name=$T --data_dir=../shared/glue/$T --model_dir=models/all-MiniLM-L6-v2 \
  --output_dir=runs/compress_$T --max_seq_length=64 --epochs=3 --stop_after=1_fine_tune
$PY -m distill.search --model_dir $FT --task_name $T --data_dir ../shared/glue/$T --speedup 3 \
  --output_dir $OUT/search --latency_cache runs/distill_latency_1label.json
$PY -m distill.extract --model_dir $FT --config $OUT/search/chosen_config.json \
  --output_dir $OUT/student_x3 --task_name $T --data_dir ../shared/glue/$T
$PY -m distill.run_distill --task_name=$T --do_train --do_eval --data_dir=../shared/glue/$T \
  --init_checkpoint=$OUT/student_x3 --teacher_model_dir=$FT --output_dir=$OUT/distilled_x3 \
  --max_seq_length=128 --train_batch_size=32 --eval_batch_size=32 --learning_rate=1e-4 --num_train_epochs=5
