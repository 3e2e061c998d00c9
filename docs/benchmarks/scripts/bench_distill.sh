#!/bin/bash
# Distilled students vs the teacher, FLOP-compact and PoWER-BERT, side by side per task; the x3
# student also exported (ONNX fp32/INT8) so its INT8 row stands beside the dense INT8 reference.
cd "$(dirname "$0")/../../.."  # the repository root
PY=".venv/bin/python"
declare -A POWER=([MRPC]="power=runs/power_MRPC/3_retrain/model" [STS-B]="power=runs/power_STS-B/3_retrain/model" [SST-2]="power=runs/power_SST-2/3_retrain/model power_strong=runs/power2_SST-2/3_retrain/model")
for T in MRPC STS-B SST-2; do
  D=runs/distill_$T
  $PY -m deploy.export --model_dir=$D/distilled_x3/model --output_dir=$D/export_x3 --max_seq_length=128 \
    --task_name=$T --data_dir=../shared/glue/$T > $D/export_x3.log 2>&1
  $PY -m deploy.benchmark dense=runs/compress_$T/1_fine_tune/model flop_compact=runs/compress_$T/4_compact ${POWER[$T]} \
    extracted_x3=$D/student_x3 distilled_x3=$D/distilled_x3/model distilled_x3=$D/export_x3 \
    extracted_x4=$D/student_x4 distilled_x4=$D/distilled_x4/model \
    --reference_onnx runs/bench_$T/reference --task_name $T --data_dir ../shared/glue/$T \
    --max_seq_length 128 --batch_size 32 --iterations 10 --threads 2 --output_dir runs/bench_distill_$T > runs/bench_distill_$T.log 2>&1
done
