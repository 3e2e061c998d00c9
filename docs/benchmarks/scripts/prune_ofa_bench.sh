#!/bin/bash
# Speed of the Prune OFA INT8 model (learned ranges, QDQ) beside the dense references, in one
# deploy.benchmark process on idle cores: dense TF, dense ONNX fp32 / dynamic INT8 (reference),
# dense static INT8, the sparse QAT model's float ONNX and learned INT8, the peer's rows, and
# OpenVINO rows for the QDQ INT8 files. Usage: prune_ofa_bench.sh TASK SEQ RUN
set -eu
task=$1; seq=$2; run=$3
PY=${PY:-.venv/bin/python}
R=runs/budget_$task
[ "$task" = SST-2 ] && R=runs/budget_SST-2_distill
$PY -m deploy.benchmark "dense=$R/1_fine_tune/model" "dense-static=$R/export/dense-static" \
  "ofa=runs/ofa/$run/export" --reference_onnx "$R/export/dense" \
  --task_name "$task" --data_dir "../shared/glue/$task" --max_seq_length "$seq" \
  --batch_size 32 --iterations 20 --threads 2 --openvino --peer_reference \
  --output_dir "runs/ofa/bench_$task"
mkdir -p "docs/benchmarks/prune_ofa_$task"
cp runs/ofa/bench_$task/benchmark.{md,csv,png} "docs/benchmarks/prune_ofa_$task/"  # not peer/
