#!/bin/bash
# distill_stsb.sh's student beside its teacher (TF, ONNX Runtime fp32/INT8), exported too.
# Run it alone: nothing else may share the cores.
set -euo pipefail
cd "$(dirname "$0")/../../.."  # the repository root
PY=".venv/bin/python"
T=STS-B; D=runs/distill_full_$T
$PY -m deploy.export --model_dir=$D/distilled_x3/model --output_dir=$D/export_x3 --max_seq_length=128 \
  --task_name=$T --data_dir=../shared/glue/$T
$PY -m deploy.benchmark dense=runs/compress_$T/1_fine_tune/model extracted_x3=$D/student_x3 \
  distilled_x3=$D/distilled_x3/model distilled_x3=$D/export_x3 --task_name $T --data_dir ../shared/glue/$T \
  --max_seq_length 128 --batch_size 32 --iterations 5 --threads 2 --output_dir runs/bench_distill_full_$T
